<#
.SYNOPSIS
Removes the Muster agent's Windows service and program.

.DESCRIPTION
Stops and deletes the service MusterAgent and removes C:\Program Files\Muster.
The state folder C:\ProgramData\Muster\agent (the agent's identity and spool)
is kept, so a reinstall carries on as the same host; -Purge deletes it too.
Run it as Administrator.

.EXAMPLE
.\uninstall.ps1 -Purge
#>
[CmdletBinding()]
param(
    # Delete the state folder as well: the host must be enrolled again.
    [switch]$Purge
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$ServiceName = 'MusterAgent'
$InstallDir = Join-Path $env:ProgramFiles 'Muster'
$Exe = Join-Path $InstallDir 'muster-agent.exe'
$DataDir = 'C:\ProgramData\Muster'

$identity = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
if (-not $identity.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'uninstall.ps1: run this in an elevated PowerShell (Run as Administrator)'
}

if (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue) {
    if (Test-Path -LiteralPath $Exe) {
        # Stops the service, waits for it, and deletes it.
        $ErrorActionPreference = 'Continue'
        & $Exe service uninstall
        $ErrorActionPreference = 'Stop'
        if ($LASTEXITCODE -ne 0) { throw "uninstall.ps1: muster-agent service uninstall failed (exit status $LASTEXITCODE)" }
    } else {
        Stop-Service -Name $ServiceName -Force -ErrorAction SilentlyContinue
        & sc.exe delete $ServiceName | Out-Null
        if ($LASTEXITCODE -ne 0) { throw "uninstall.ps1: sc.exe delete $ServiceName failed (exit status $LASTEXITCODE)" }
    }
}
if (Test-Path -LiteralPath $InstallDir) {
    Remove-Item -LiteralPath $InstallDir -Recurse -Force
}
if ($Purge) {
    if (Test-Path -LiteralPath $DataDir) { Remove-Item -LiteralPath $DataDir -Recurse -Force }
    Write-Host 'muster-agent removed, with its state'
} else {
    Write-Host "muster-agent removed; state kept in $DataDir\agent (-Purge deletes it)"
}

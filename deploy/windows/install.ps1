<#
.SYNOPSIS
Installs the Muster agent as the Windows service MusterAgent.

.DESCRIPTION
Copies muster-agent.exe to C:\Program Files\Muster, makes the state folder
C:\ProgramData\Muster\agent readable by SYSTEM and Administrators only,
enrolls the host with the collector (once: an enrolled folder is kept),
registers the service (automatic, delayed start; restarts after a failure)
and starts it. Running it again upgrades the program and restarts the
service. Run it as Administrator, in Windows PowerShell 5.1 or PowerShell 7.

The enrollment token comes from -TokenFile or the MUSTER_ENROLL_TOKEN
environment variable (Intune and SCCM pass secrets that way), never from the
command line, so it does not show in process lists or the script's log.

.EXAMPLE
$env:MUSTER_ENROLL_TOKEN = 'TOKEN'
.\install.ps1 -Collector https://muster.example.org:8443 -CaCert .\ca.pem -BinaryPath .\muster-agent.exe
#>
[CmdletBinding()]
param(
    # The collector, https://NAME:PORT (or MUSTER_COLLECTOR); needed only to enroll.
    [string]$Collector = $env:MUSTER_COLLECTOR,
    # The collector's CA certificate (ca.pem); needed only to enroll.
    [string]$CaCert,
    # A file holding the one-time enrollment token (or set MUSTER_ENROLL_TOKEN).
    [string]$TokenFile,
    # The agent program to install.
    [string]$BinaryPath = (Join-Path $PSScriptRoot 'muster-agent.exe')
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$ServiceName = 'MusterAgent'
$InstallDir = Join-Path $env:ProgramFiles 'Muster'
$Exe = Join-Path $InstallDir 'muster-agent.exe'
# The default of `muster-agent service install --state-dir`.
$StateDir = 'C:\ProgramData\Muster\agent'
# SYSTEM and BUILTIN\Administrators by SID: the names differ by language.
$System = '*S-1-5-18'
$Administrators = '*S-1-5-32-544'

function Invoke-Agent([string[]]$Arguments) {
    # Runs the installed agent and stops the script, with the agent's own
    # message above, when it fails. Its log lines on standard error are not
    # errors: 'Continue' here keeps PowerShell from stopping on them.
    $ErrorActionPreference = 'Continue'
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) {
        throw "install.ps1: muster-agent $($Arguments[0..1] -join ' ') failed (exit status $LASTEXITCODE); see its message above"
    }
}

$identity = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
if (-not $identity.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'install.ps1: run this in an elevated PowerShell (Run as Administrator): it installs a service running as SYSTEM'
}
if (-not (Test-Path -LiteralPath $BinaryPath -PathType Leaf)) {
    throw "install.ps1: no agent program at $BinaryPath (give -BinaryPath PATH\muster-agent.exe)"
}

# The running service holds the program open: stop it before replacing it.
$service = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
if ($service -and $service.Status -ne 'Stopped') {
    Stop-Service -Name $ServiceName -Force
    $service.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(30))
}
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
Copy-Item -LiteralPath $BinaryPath -Destination $Exe -Force

# The state folder holds the agent's private key. Inherited rights (Users
# may read ProgramData) are removed; SYSTEM and Administrators get full
# control, passed on to every file and folder the agent makes in it.
New-Item -ItemType Directory -Force -Path $StateDir | Out-Null
& icacls.exe $StateDir /inheritance:r /grant:r "${System}:(OI)(CI)F" "${Administrators}:(OI)(CI)F" | Out-Null
if ($LASTEXITCODE -ne 0) {
    throw "install.ps1: icacls could not restrict $StateDir to SYSTEM and Administrators (exit status $LASTEXITCODE)"
}

if (Test-Path -LiteralPath (Join-Path $StateDir 'agent.toml')) {
    Write-Host "already enrolled ($StateDir\agent.toml); not enrolling again"
} else {
    if (-not $Collector) { throw 'install.ps1: give -Collector https://NAME:PORT (or set MUSTER_COLLECTOR)' }
    if (-not $CaCert) { throw "install.ps1: give -CaCert FILE: the collector's CA certificate" }
    if (-not (Test-Path -LiteralPath $CaCert -PathType Leaf)) { throw "install.ps1: cannot read the CA certificate $CaCert" }
    $CaCert = (Resolve-Path -LiteralPath $CaCert).Path
    if ($TokenFile) {
        if (-not (Test-Path -LiteralPath $TokenFile -PathType Leaf)) { throw "install.ps1: cannot read the token file $TokenFile" }
        $TokenFile = (Resolve-Path -LiteralPath $TokenFile).Path
        Invoke-Agent -Arguments @('enroll', '--collector', $Collector, '--ca-cert', $CaCert, '--token-file', $TokenFile, '--state-dir', $StateDir)
    } elseif ($env:MUSTER_ENROLL_TOKEN) {
        # enroll reads MUSTER_ENROLL_TOKEN itself.
        Invoke-Agent -Arguments @('enroll', '--collector', $Collector, '--ca-cert', $CaCert, '--state-dir', $StateDir)
    } else {
        throw 'install.ps1: give -TokenFile FILE or set the MUSTER_ENROLL_TOKEN environment variable'
    }
}
Invoke-Agent -Arguments @('config', 'check', '--state-dir', $StateDir)

# Registers the service, or updates it on a reinstall.
Invoke-Agent -Arguments @('service', 'install', '--state-dir', $StateDir)
Start-Service -Name $ServiceName
(Get-Service -Name $ServiceName).WaitForStatus('Running', [TimeSpan]::FromSeconds(30))
Write-Host "muster-agent installed and running as the service $ServiceName; log: $StateDir\muster-agent.log"

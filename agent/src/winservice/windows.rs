//! The calls into the Service Control Manager (windows-service). Built
//! only on Windows: the decisions are in the parent module, tested on
//! every platform; the agent loop is the one `muster-agent run` uses.

use super::{
    DELAYED_AUTO_START, DESCRIPTION, DISPLAY_NAME, FAILURE_COUNT_RESET, NAME, RESTART_DELAYS,
    STOP_WAIT_HINT,
};
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

/// ERROR_SERVICE_DOES_NOT_EXIST
const NO_SUCH_SERVICE: i32 = 1060;

fn is_missing(e: &windows_service::Error) -> bool {
    matches!(e, windows_service::Error::Winapi(io) if io.raw_os_error() == Some(NO_SUCH_SERVICE))
}

fn manager(access: ServiceManagerAccess) -> Result<ServiceManager> {
    ServiceManager::local_computer(None::<&str>, access)
        .context("cannot open the Service Control Manager (run this as Administrator)")
}

/// Registers the service, or updates it when it exists (a reinstall).
pub fn install(state_dir: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    // The service starts in System32: a relative folder would land there.
    let state_dir = std::path::absolute(state_dir)
        .with_context(|| format!("cannot make {} absolute", state_dir.display()))?;
    let info = ServiceInfo {
        name: NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.clone(),
        launch_arguments: super::launch_arguments(&state_dir),
        dependencies: vec![],
        account_name: None, // LocalSystem
        account_password: None,
    };
    let scm = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
    // START too: failure actions that restart need it.
    let access = ServiceAccess::QUERY_CONFIG | ServiceAccess::CHANGE_CONFIG | ServiceAccess::START;
    let service = match scm.open_service(NAME, access) {
        Ok(s) => {
            s.change_config(&info)
                .with_context(|| format!("cannot update the service {NAME}"))?;
            s
        }
        Err(e) if is_missing(&e) => scm
            .create_service(&info, access)
            .with_context(|| format!("cannot create the service {NAME}"))?,
        Err(e) => return Err(e).with_context(|| format!("cannot open the service {NAME}")),
    };
    service.set_description(DESCRIPTION)?;
    service.set_delayed_auto_start(DELAYED_AUTO_START)?;
    service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(FAILURE_COUNT_RESET),
            reboot_msg: None,
            command: None,
            actions: Some(
                RESTART_DELAYS
                    .iter()
                    .map(|&delay| ServiceAction {
                        action_type: ServiceActionType::Restart,
                        delay,
                    })
                    .collect(),
            ),
        })
        .context("cannot set the service's recovery actions")?;
    // A stop with a non-zero exit code counts as a failure too.
    service.set_failure_actions_on_non_crash_failures(true)?;
    println!(
        "service {NAME} installed: {}\nstart it with: Start-Service {NAME}",
        super::command_line(&exe, &state_dir)
    );
    Ok(())
}

/// Stops and deletes the service; the state folder stays (a reinstall
/// carries on with the same identity).
pub fn uninstall() -> Result<()> {
    let scm = manager(ServiceManagerAccess::CONNECT)?;
    let access = ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE;
    let service = match scm.open_service(NAME, access) {
        Ok(s) => s,
        Err(e) if is_missing(&e) => {
            println!("service {NAME} is not installed");
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open the service {NAME}")),
    };
    if service.query_status()?.current_state != ServiceState::Stopped {
        let _ = service.stop();
        let deadline = std::time::Instant::now() + STOP_WAIT_HINT * 3;
        while service.query_status()?.current_state != ServiceState::Stopped
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    service
        .delete()
        .with_context(|| format!("cannot delete the service {NAME}"))?;
    println!("service {NAME} removed; the state folder is kept");
    Ok(())
}

static STATE_DIR: OnceLock<PathBuf> = OnceLock::new();

windows_service::define_windows_service!(ffi_service_main, service_main);

/// Hands this thread to the Service Control Manager until the service
/// stops; the agent runs on the thread it starts.
pub fn run(state_dir: PathBuf) -> Result<()> {
    let _ = STATE_DIR.set(state_dir);
    windows_service::service_dispatcher::start(NAME, ffi_service_main).context(
        "cannot connect to the Service Control Manager: `service run` is what the service runs; in a console use `muster-agent run`",
    )
}

fn service_main(_arguments: Vec<OsString>) {
    let dir = STATE_DIR.get().cloned().unwrap_or_default();
    if let Err(e) = serve(dir) {
        tracing::error!(error = %format!("{e:#}"), "the service stopped on an error");
    }
}

fn status(state: ServiceState, exit: u32) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: match state {
            ServiceState::Running => ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
            _ => ServiceControlAccept::empty(),
        },
        exit_code: match exit {
            0 => ServiceExitCode::NO_ERROR,
            n => ServiceExitCode::ServiceSpecific(n),
        },
        checkpoint: 0,
        wait_hint: match state {
            ServiceState::StopPending => STOP_WAIT_HINT,
            _ => Duration::ZERO,
        },
        process_id: None,
    }
}

fn serve(dir: PathBuf) -> Result<()> {
    // The control handler's Stop is what SIGTERM is on Linux. A Notify
    // keeps a stop that comes before the loop waits for it.
    let stop = Arc::new(tokio::sync::Notify::new());
    let on_stop = stop.clone();
    let handle = service_control_handler::register(NAME, move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            on_stop.notify_one();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })?;
    handle.set_service_status(status(ServiceState::Running, 0))?;
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
        .and_then(|rt| {
            rt.block_on(crate::run_service(
                dir,
                async move { stop.notified().await },
            ))
        });
    handle.set_service_status(status(ServiceState::StopPending, 0))?;
    if let Err(e) = &outcome {
        tracing::error!(error = %format!("{e:#}"), "the agent stopped on an error");
    }
    handle.set_service_status(status(ServiceState::Stopped, super::exit_code(&outcome)))?;
    Ok(())
}

//! Crash points: named places in the storage and consensus code where a test can cut the process
//! (an abrupt `abort`, as a power cut or `kill -9` would), to check what survives a restart.
//!
//! They exist only with the `failpoints` feature (the `fail` crate), which only the crash tests
//! turn on; in any other build [`crash_point!`](crate::crash_point) expands to nothing and
//! [`setup`] does nothing. A process arms them from `FAILPOINTS` at start
//! (`name=actions;...`, the `fail` crate's syntax) or, later, from the file named by
//! `MERIDIAN_FAILPOINTS_FILE` (same syntax; read again whenever it changes), so a test can arm a
//! point on a running node once the load it wants to cut is flowing. The action that cuts is
//! `return`; `return(ms)` first waits `ms` milliseconds (to let work done just before the point
//! reach the network).

/// Marks a crash point named `$name` (`area::operation::moment`).
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoints::hit($name);
    };
}

/// Cuts the process here if the point `name` is armed.
#[cfg(feature = "failpoints")]
pub fn hit(name: &'static str) {
    fail::fail_point!(name, |arg: Option<String>| cut(name, arg));
}

#[cfg(feature = "failpoints")]
fn cut(name: &str, arg: Option<String>) -> ! {
    if let Some(ms) = arg.and_then(|a| a.trim().parse::<u64>().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    eprintln!("crash point {name} reached: aborting the process");
    std::process::abort()
}

/// Arms the crash points named in `FAILPOINTS` and starts watching `MERIDIAN_FAILPOINTS_FILE`.
/// A no-op without the `failpoints` feature.
pub fn setup() -> Result<(), String> {
    #[cfg(feature = "failpoints")]
    {
        if let Ok(spec) = std::env::var("FAILPOINTS") {
            apply(&spec)?;
        }
        if let Some(path) = std::env::var_os("MERIDIAN_FAILPOINTS_FILE") {
            std::thread::Builder::new()
                .name("meridian-failpoints".into())
                .spawn(move || watch(std::path::PathBuf::from(path)))
                .map_err(|e| format!("spawn the failpoint watcher: {e}"))?;
        }
    }
    Ok(())
}

/// Configures every `name=actions` of `spec` (separated by `;` or new lines); returns the names.
#[cfg(feature = "failpoints")]
fn apply(spec: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for item in spec
        .split([';', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (name, actions) = item
            .split_once('=')
            .ok_or_else(|| format!("failpoint {item:?} is not name=actions"))?;
        fail::cfg(name.trim(), actions.trim()).map_err(|e| format!("failpoint {name}: {e}"))?;
        eprintln!("crash point {name} armed: {actions}");
        names.push(name.trim().to_string());
    }
    Ok(names)
}

#[cfg(feature = "failpoints")]
fn watch(path: std::path::PathBuf) {
    let mut last = String::new();
    let mut armed: Vec<String> = Vec::new();
    loop {
        let now = std::fs::read_to_string(&path).unwrap_or_default();
        if now != last {
            for name in armed.drain(..) {
                fail::remove(name);
            }
            match apply(&now) {
                Ok(names) => armed = names,
                Err(e) => eprintln!("bad failpoint file {}: {e}", path.display()),
            }
            last = now;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

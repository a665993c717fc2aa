//! What a process costs: CPU time and peak memory, read from Linux `/proc`.

use std::path::Path;
use std::process::Command;

/// Peak resident memory (`VmHWM`) of a process, in MiB; `None` where unreadable.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Resets this process's peak memory, so the next [`peak_rss_mib`] covers what follows.
pub fn reset_own_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// User + system CPU seconds a process has used so far (NaN when unreadable).
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(Path::new(&format!("/proc/{pid}/stat")))
}

/// CPU seconds of a process's threads whose name starts with `prefix` (librdkafka names
/// its threads `rdk:…`).
pub fn threads_cpu_seconds(pid: u32, prefix: &str) -> f64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten();
    tasks
        .map(|task| task.path())
        .filter(|dir| {
            std::fs::read_to_string(dir.join("comm")).is_ok_and(|name| name.starts_with(prefix))
        })
        .map(|dir| stat_cpu_seconds(&dir.join("stat")))
        .sum()
}

/// User + system CPU seconds in a `/proc/…/stat` file.
fn stat_cpu_seconds(path: &Path) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / clock_ticks_per_second(),
        _ => f64::NAN,
    }
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let me = std::process::id();
        let peak = peak_rss_mib(me).expect("VmHWM");
        assert!(peak > 1.0, "{peak} MiB");
        let spent = cpu_seconds(me);
        assert!(spent >= 0.0, "{spent}");
        assert!(peak_rss_mib(u32::MAX).is_none());
        assert!(cpu_seconds(u32::MAX).is_nan());
    }
}

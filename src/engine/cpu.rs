// SPDX-License-Identifier: MPL-2.0
//! CPU time, for the automatic-workers controller: whether blocking work
//! spends its time on a CPU, and whether the CPUs are full (then another
//! worker cannot raise the throughput). `None` where a clock is missing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock;

#[cfg(unix)]
fn clock(id: libc::clockid_t) -> Option<Duration> {
    let mut ts = std::mem::MaybeUninit::<libc::timespec>::uninit();
    // SAFETY: clock_gettime writes the whole timespec when it returns 0,
    // and only then is it read.
    let ts = unsafe {
        if libc::clock_gettime(id, ts.as_mut_ptr()) != 0 {
            return None;
        }
        ts.assume_init()
    };
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
}

/// CPU time of the calling thread.
pub(super) fn thread() -> Option<Duration> {
    #[cfg(unix)]
    return clock(libc::CLOCK_THREAD_CPUTIME_ID);
    #[cfg(not(unix))]
    None
}

/// CPU time of the whole process, every thread.
pub(super) fn process() -> Option<Duration> {
    #[cfg(unix)]
    return clock(libc::CLOCK_PROCESS_CPUTIME_ID);
    #[cfg(not(unix))]
    None
}

/// The machine's idle and total CPU time so far, in clock ticks, from
/// `/proc/stat` (Linux). The kernel builds the whole file on every read,
/// costly on large hosts, so the engines of a process share one reading
/// for 50 ms.
pub(super) fn machine() -> Option<(u64, u64)> {
    /// Idle and total ticks.
    type Ticks = Option<(u64, u64)>;
    static LAST: Mutex<Option<(Instant, Ticks)>> = Mutex::new(None);
    let mut last = lock(&LAST);
    if let Some((at, ticks)) = *last
        && at.elapsed() < Duration::from_millis(50)
    {
        return ticks;
    }
    let ticks = read_proc_stat();
    *last = Some((Instant::now(), ticks));
    ticks
}

fn read_proc_stat() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    // user nice system idle iowait irq softirq steal; guest time is in user.
    let ticks: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((idle, ticks.iter().sum()))
}

/// CPUs this process may use (affinity and cgroup quota, rounded down).
pub(super) fn available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_accumulates_cpu_time() {
        let before = thread().expect("thread clock");
        let p_before = process().expect("process clock");
        let mut x = 0u64;
        while thread().expect("thread clock") - before < Duration::from_millis(5) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(process().expect("process clock") - p_before >= Duration::from_millis(5));
        assert!(available() >= 1);
        let (idle, total) = machine().expect("/proc/stat");
        assert!(idle <= total && total > 0);
    }
}

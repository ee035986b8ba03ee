// SPDX-License-Identifier: MPL-2.0
//! CPU time, for the automatic-workers controller: whether blocking work
//! spends its time on a CPU, and whether the process already uses every
//! CPU it may (then another worker cannot raise the throughput).

use std::time::Duration;

fn clock(id: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    let ok = unsafe { libc::clock_gettime(id, &mut ts) } == 0;
    (ok && ts.tv_sec >= 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// CPU time of the calling thread.
pub(super) fn thread() -> Option<Duration> {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of the whole process, every thread.
pub(super) fn process() -> Option<Duration> {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// The machine's idle and total CPU time so far, in clock ticks
/// (`/proc/stat`; Linux only).
pub(super) fn machine() -> Option<(u64, u64)> {
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

/// CPUs this process may use (affinity and cgroup quota).
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

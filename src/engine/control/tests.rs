// SPDX-License-Identifier: MPL-2.0
//! The controller against simulated workloads, window by window.

use super::*;

/// A workload's answer to a worker count: per-frame time, and the rate
/// frames arrive at (None: as fast as the pool takes them).
#[derive(Clone, Copy)]
enum Load {
    /// Waits (timers, remote calls): the time does not depend on workers.
    Latency { t: f64, rate: Option<f64> },
    /// CPU-bound on `cores`: past them, each frame takes proportionally longer.
    Cpu { t: f64, cores: f64 },
    /// A server serving `k` at once; the others wait there.
    Server { t: f64, k: f64 },
}

/// A deterministic ±3 % jitter.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        1.0 + 0.03 * (((self.0 >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0)
    }
}

/// One window of `load` at `n` workers, as the engine would measure it.
fn window(load: Load, n: usize, noise: &mut Noise) -> Sample {
    let n = n as f64;
    let elapsed = 0.1;
    let (rtt, busy, waiting) = match load {
        Load::Latency { t, rate } => match rate {
            Some(rate) if rate * t < n => (t, rate * t, 0.0),
            _ => (t, n, n),
        },
        Load::Cpu { t, cores } => (t * (n / cores).max(1.0), n, n),
        Load::Server { t, k } => (t * (n / k).max(1.0), n, n),
    };
    let rtt = rtt * noise.next();
    let completed = (busy * elapsed / rtt).round().max(1.0);
    // CPU-bound frames spend their no-load time on a CPU; the process uses
    // the cores the workers keep busy.
    let (cpu, process_cpu) = match load {
        Load::Cpu { t, cores } => (t * completed, n.min(cores) * elapsed),
        _ => (0.0, 0.0),
    };
    Sample {
        elapsed: Duration::from_secs_f64(elapsed),
        completed: completed as u64,
        processing: Duration::from_secs_f64(rtt * completed),
        queued: (waiting * completed) as u64,
        cpu: Duration::from_secs_f64(cpu),
        process_cpu: Duration::from_secs_f64(process_cpu),
        // No machine figures (as where /proc/stat cannot be read).
        ..Sample::default()
    }
}

/// The count after each of `windows` windows.
fn run(c: &mut Controller, load: Load, windows: usize, noise: &mut Noise) -> Vec<usize> {
    (0..windows)
        .map(|_| {
            c.sample(window(load, c.workers(), noise));
            c.workers()
        })
        .collect()
}

fn swing(counts: &[usize]) -> f64 {
    let max = *counts.iter().max().unwrap() as f64;
    let min = *counts.iter().min().unwrap() as f64;
    max / min
}

const DELAY_20MS: Load = Load::Latency {
    t: 0.020,
    rate: None,
};

#[test]
fn latency_bound_work_grows_to_the_bound_within_a_second() {
    let mut c = Controller::new(2, 256, 2);
    let counts = run(&mut c, DELAY_20MS, 10, &mut Noise(1));
    assert_eq!(counts[9], 256, "{counts:?}");
    let steady = run(&mut c, DELAY_20MS, 50, &mut Noise(2));
    assert!(steady.iter().all(|&n| n == 256), "{steady:?}");
}

#[test]
fn cpu_bound_work_stays_at_the_cores_while_they_are_full() {
    let load = Load::Cpu {
        t: 0.010,
        cores: 2.0,
    };
    let mut c = Controller::new(2, 256, 2);
    let counts = run(&mut c, load, 110, &mut Noise(3));
    // Without the CPU figures it tries one more every other window.
    assert!(counts.iter().all(|&n| n == 2), "{counts:?}");
}

/// A window of `load` on a machine whose other processes leave it
/// `idle` of 200 ticks.
fn on_busy_machine(load: Load, n: usize, noise: &mut Noise, idle: u64) -> Sample {
    Sample {
        machine_total: 200,
        machine_idle: idle,
        ..window(load, n, noise)
    }
}

#[test]
fn cpu_bound_work_holds_while_other_processes_fill_the_machine() {
    // Ours gets one of the two CPUs: frames take twice their CPU time.
    let load = Load::Cpu {
        t: 0.010,
        cores: 1.0,
    };
    let mut c = Controller::new(2, 256, 2);
    let mut noise = Noise(12);
    let counts: Vec<usize> = (0..110)
        .map(|_| {
            let w = on_busy_machine(load, c.workers(), &mut noise, 2);
            c.sample(w);
            c.workers()
        })
        .collect();
    assert!(counts.iter().all(|&n| n == 2), "{counts:?}");
}

#[test]
fn latency_bound_work_grows_on_a_full_machine() {
    let mut c = Controller::new(2, 256, 2);
    let mut noise = Noise(13);
    for _ in 0..10 {
        let mut w = on_busy_machine(DELAY_20MS, c.workers(), &mut noise, 0);
        // Its own threads are busy too (other pipelines of the process).
        w.process_cpu = w.elapsed * 2;
        c.sample(w);
    }
    assert_eq!(c.workers(), 256);
}

#[test]
fn cpu_bound_work_cut_under_noise_on_a_full_machine_comes_back() {
    // Cut below the CPUs (a probe, or a noisy window taken for
    // saturation) while other processes keep the machine full: back to
    // the CPUs' count, not stuck lower.
    let load = Load::Cpu {
        t: 0.010,
        cores: 2.0,
    };
    let mut c = Controller::new(1, 256, 2);
    let mut noise = Noise(14);
    let counts: Vec<usize> = (0..30)
        .map(|_| {
            let w = on_busy_machine(load, c.workers(), &mut noise, 0);
            c.sample(w);
            c.workers()
        })
        .collect();
    assert!(counts[5..].iter().all(|&n| n == 2), "{counts:?}");
}

#[test]
fn cpu_bound_work_settles_near_the_cores_while_the_cpus_are_not_full() {
    // Ours never looks full and the machine's figures are missing: the
    // processing time alone stops the growth.
    let load = Load::Cpu {
        t: 0.010,
        cores: 2.0,
    };
    let mut c = Controller::new(2, 256, 2);
    let mut noise = Noise(3);
    let mut next = |c: &mut Controller| {
        let mut w = window(load, c.workers(), &mut noise);
        w.process_cpu = w.process_cpu.mul_f64(0.8);
        c.sample(w);
        c.workers()
    };
    (0..10).for_each(|_| {
        next(&mut c);
    });
    let steady: Vec<usize> = (0..100).map(|_| next(&mut c)).collect();
    let mean = steady.iter().sum::<usize>() as f64 / steady.len() as f64;
    // Between the cores and one more: at most 1.5x the cores' count
    // (without the knee rule, cores + 1 for good: a mean of 3).
    assert!(steady.iter().all(|&n| (2..=3).contains(&n)), "{steady:?}");
    assert!(mean <= 2.6, "mean {mean}: {steady:?}");
    assert!(swing(&steady) <= 2.0, "{steady:?}");
}

#[test]
fn a_saturated_server_stops_the_growth_near_its_capacity() {
    let load = Load::Server { t: 0.020, k: 8.0 };
    let mut c = Controller::new(2, 256, 2);
    run(&mut c, load, 10, &mut Noise(5));
    let steady = run(&mut c, load, 100, &mut Noise(6));
    let mean = steady.iter().sum::<usize>() as f64 / steady.len() as f64;
    assert!(steady.iter().all(|&n| (6..=12).contains(&n)), "{steady:?}");
    assert!(mean <= 9.5, "mean {mean}: {steady:?}");
    assert!(swing(&steady) <= 2.0, "{steady:?}");
}

#[test]
fn a_live_source_gets_what_it_needs_and_no_more() {
    // 30 fps, 100 ms a frame: three frames in processing at a time.
    let load = Load::Latency {
        t: 0.100,
        rate: Some(30.0),
    };
    let mut c = Controller::new(2, 256, 2);
    let counts = run(&mut c, load, 100, &mut Noise(7));
    let steady = &counts[10..];
    assert!(steady.iter().all(|&n| (4..=5).contains(&n)), "{counts:?}");
}

#[test]
fn idle_workers_go_when_the_load_drops() {
    let mut c = Controller::new(2, 256, 2);
    run(&mut c, DELAY_20MS, 10, &mut Noise(8));
    assert_eq!(c.workers(), 256);
    // 100 frames/s of 20 ms: two busy.
    let load = Load::Latency {
        t: 0.020,
        rate: Some(100.0),
    };
    let counts = run(&mut c, load, 10, &mut Noise(9));
    assert!(counts[9] <= 4, "{counts:?}");
    // Never more than halved at once.
    let mut prev = 256;
    for n in counts {
        assert!(n * 2 >= prev, "{prev} -> {n}");
        prev = n;
    }
}

#[test]
fn a_changing_delay_is_followed_within_a_second() {
    // Frames arrive at 2000/s: 5 ms needs 10 workers, 50 ms needs 100.
    let fast = Load::Latency {
        t: 0.005,
        rate: Some(2000.0),
    };
    let slow = Load::Latency {
        t: 0.050,
        rate: Some(2000.0),
    };
    let mut c = Controller::new(2, 256, 2);
    let counts = run(&mut c, fast, 10, &mut Noise(10));
    assert!((11..=16).contains(&counts[9]), "{counts:?}");
    let counts = run(&mut c, slow, 10, &mut Noise(11));
    assert!((101..=256).contains(&counts[9]), "{counts:?}");
    let counts = run(&mut c, fast, 10, &mut Noise(12));
    assert!((11..=16).contains(&counts[9]), "{counts:?}");
}

#[test]
fn slower_work_at_the_same_count_is_not_taken_for_saturation() {
    // As fast as the pool takes them: 256 workers pay at 5 ms and at 50 ms.
    let fast = Load::Latency {
        t: 0.005,
        rate: None,
    };
    let slow = Load::Latency {
        t: 0.050,
        rate: None,
    };
    let mut c = Controller::new(2, 256, 2);
    let counts = run(&mut c, fast, 10, &mut Noise(20));
    assert_eq!(counts[9], 256, "{counts:?}");
    let counts = run(&mut c, slow, 10, &mut Noise(21));
    assert!(counts.iter().all(|&n| n >= 192), "{counts:?}");
    assert_eq!(counts[9], 256, "{counts:?}");
}

#[test]
fn without_demand_the_count_never_grows() {
    // Frames arrive slower than 3 workers take them: busy 2.9 of 3.
    let load = Load::Latency {
        t: 0.010,
        rate: Some(290.0),
    };
    let mut c = Controller::new(3, 256, 2);
    let counts = run(&mut c, load, 30, &mut Noise(22));
    assert!(counts.iter().all(|&n| n <= 3), "{counts:?}");
}

#[test]
fn the_count_stays_within_its_bounds() {
    let mut c = Controller::new(0, 8, 2);
    assert_eq!(c.workers(), 1);
    run(&mut c, DELAY_20MS, 20, &mut Noise(13));
    assert_eq!(c.workers(), 8);
    let change = c.set_max(3).expect("lowered");
    assert_eq!((change.from, change.to), (8, 3));
    run(&mut c, DELAY_20MS, 5, &mut Noise(14));
    assert_eq!(c.workers(), 3);
    let mut c = Controller::new(2000, 256, 2);
    assert_eq!(c.workers(), 256);
    run(
        &mut c,
        Load::Latency {
            t: 0.001,
            rate: Some(0.0),
        },
        50,
        &mut Noise(15),
    );
    assert!(c.workers() >= 1);
}

#[test]
fn short_or_empty_windows_change_nothing() {
    let mut c = Controller::new(4, 256, 2);
    let short = Sample {
        elapsed: Duration::from_millis(50),
        completed: 10,
        processing: Duration::from_millis(500),
        queued: 100,
        ..Sample::default()
    };
    assert_eq!(c.sample(short), None);
    let empty = Sample {
        elapsed: Duration::from_secs(2),
        ..Sample::default()
    };
    let mut c = Controller::new(4, 256, 2);
    assert_eq!(c.sample(empty), None);
    assert_eq!(c.workers(), 4);
}

#[test]
fn frames_slower_than_a_window_are_decided_on_after_a_second() {
    // 2 s a frame, 4 workers busy, frames waiting: one completes per half second.
    let mut c = Controller::new(4, 256, 2);
    let mut changed = None;
    for _ in 0..20 {
        changed = changed.or(c.sample(Sample {
            elapsed: Duration::from_millis(100),
            completed: 0,
            processing: Duration::ZERO,
            queued: 0,
            ..Sample::default()
        }));
    }
    assert_eq!(changed, None);
}

/// One window of CPU-bound `load` whose processing times jitter by ±25 %
/// (a debug build, other processes): some windows run faster than the
/// base.
fn noisy_cpu_window(t: f64, cores: f64, n: usize, noise: &mut Noise) -> Sample {
    let mut s = window(Load::Cpu { t, cores }, n, noise);
    let jitter = 1.0 + 8.0 * (noise.next() - 1.0);
    s.processing = Duration::from_secs_f64(s.processing.as_secs_f64() * jitter);
    s
}

#[test]
fn noisy_cpu_bound_work_does_not_ratchet_up() {
    let mut c = Controller::new(2, 256, 2);
    let mut noise = Noise(30);
    let counts: Vec<usize> = (0..300)
        .map(|_| {
            let n = c.workers();
            c.sample(noisy_cpu_window(0.010, 2.0, n, &mut noise));
            c.workers()
        })
        .collect();
    let tail = &counts[100..];
    let mean = tail.iter().sum::<usize>() as f64 / tail.len() as f64;
    assert!(tail.iter().all(|&n| n <= 8), "{counts:?}");
    assert!(mean <= 4.0, "mean {mean}: {counts:?}");
}

#[test]
fn a_knee_found_while_the_work_slowed_does_not_slow_the_growth() {
    let mut c = Controller::new(2, 256, 2);
    run(
        &mut c,
        Load::Latency {
            t: 0.005,
            rate: None,
        },
        10,
        &mut Noise(30),
    );
    assert_eq!(c.workers(), 256);
    // 5 ms waits become 50 ms ones over several windows, each less than
    // twice the last: taken for saturation at first, and cut.
    let mut noise = Noise(31);
    for t in [0.0075, 0.011, 0.017, 0.025, 0.038] {
        c.sample(window(
            Load::Latency { t, rate: None },
            c.workers(),
            &mut noise,
        ));
    }
    // From there, doubling back within a second (10 windows), not one
    // worker at a time from a knee measured against the old work.
    let counts = run(
        &mut c,
        Load::Latency {
            t: 0.050,
            rate: None,
        },
        10,
        &mut noise,
    );
    assert_eq!(counts[9], 256, "{counts:?}");
}

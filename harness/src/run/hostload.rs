//! How busy the rest of the machine was while a cell was timed: the CPU time every other process
//! took (from `/proc/stat` less this process's own `/proc/self/stat`) and the time a hypervisor
//! stole, between two snapshots. A timing taken while a compiler or another benchmark ran on the
//! same cores is slower for reasons that have nothing to do with the configuration measured; the
//! report says so rather than letting a comparison call it a regression.

use tcobench_results::schema::HostLoad;

/// Cumulative CPU counters at one instant, clock ticks (`USER_HZ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuSnapshot {
    /// Busy time of all CPUs, steal excluded: user + nice + system + irq + softirq.
    pub(crate) busy: u64,
    /// Time stolen by the hypervisor, all CPUs.
    pub(crate) steal: u64,
    /// Every state of all CPUs (idle and iowait included).
    pub(crate) total: u64,
    /// CPUs the aggregate line covers.
    pub(crate) cpus: u32,
    /// This process's user + system time (all its threads).
    pub(crate) own: u64,
}

impl CpuSnapshot {
    /// Reads the counters now; `None` where `/proc` is not there (not Linux) or unreadable.
    pub(crate) fn read() -> Option<CpuSnapshot> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        parse(&stat, &own)
    }
}

/// Parses `/proc/stat` and `/proc/self/stat` text.
pub(crate) fn parse(stat: &str, own_stat: &str) -> Option<CpuSnapshot> {
    let fields: Vec<u64> = stat
        .lines()
        .find(|l| l.starts_with("cpu "))?
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already
    // counted in user and nice.
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    if fields.len() < 4 {
        return None;
    }
    let busy = get(0) + get(1) + get(2) + get(5) + get(6);
    let steal = get(7);
    let total = busy + steal + get(3) + get(4);
    let cpus = stat
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count() as u32;
    // The command name (field 2) is in parentheses and may hold spaces: count after the last `)`.
    let after = &own_stat[own_stat.rfind(')')? + 1..];
    let own: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    Some(CpuSnapshot {
        busy,
        steal,
        total,
        cpus: cpus.max(1),
        own: own.iter().sum(),
    })
}

/// The load between two snapshots of the same process, `None` when no tick elapsed.
pub(crate) fn between(start: &CpuSnapshot, end: &CpuSnapshot) -> Option<HostLoad> {
    let total = end.total.checked_sub(start.total)?;
    if total == 0 {
        return None;
    }
    let busy = end.busy.saturating_sub(start.busy);
    let steal = end.steal.saturating_sub(start.steal);
    let own = end.own.saturating_sub(start.own);
    // Wall time of the interval in ticks: every CPU accrues one tick per tick of wall time.
    let wall_ticks = total as f64 / f64::from(end.cpus);
    Some(HostLoad {
        cpus: end.cpus,
        wall_ticks: wall_ticks.round() as u64,
        own_cores: own as f64 / wall_ticks,
        other_cores: busy.saturating_sub(own) as f64 / wall_ticks,
        steal_fraction: steal as f64 / total as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_0: &str = "cpu  1000 0 500 8000 100 0 0 0 0 0\n\
                          cpu0 500 0 250 4000 50 0 0 0 0 0\n\
                          cpu1 500 0 250 4000 50 0 0 0 0 0\nintr 1 2\n";
    // 100 wall ticks later on 2 CPUs (200 CPU ticks): 120 user, 30 system, 10 steal, 40 idle.
    const STAT_1: &str = "cpu  1120 0 530 8040 100 0 0 10 0 0\n\
                          cpu0 560 0 265 4020 50 0 0 5 0 0\n\
                          cpu1 560 0 265 4020 50 0 0 5 0 0\nintr 1 2\n";
    fn own(utime: u64, stime: u64) -> String {
        format!(
            "4242 (tcobench run-cell (x)) S 1 4242 4242 0 -1 4194304 100 0 0 0 {utime} {stime} 0 0 20 0 3 0"
        )
    }

    #[test]
    fn other_processes_and_steal_by_hand() {
        let a = parse(STAT_0, &own(300, 20)).unwrap();
        assert_eq!(
            (a.busy, a.steal, a.total, a.cpus, a.own),
            (1500, 0, 9600, 2, 320)
        );
        let b = parse(STAT_1, &own(390, 30)).unwrap();
        let load = between(&a, &b).unwrap();
        // Busy 150 ticks, of which ours 100: the other processes took 50 ticks in 100 of wall
        // time, half a core; we took one core; 10 of 200 CPU ticks were stolen.
        assert_eq!(load.cpus, 2);
        assert_eq!(load.wall_ticks, 100);
        assert!((load.own_cores - 1.0).abs() < 1e-12, "{load:?}");
        assert!((load.other_cores - 0.5).abs() < 1e-12, "{load:?}");
        assert!((load.steal_fraction - 0.05).abs() < 1e-12, "{load:?}");
    }

    #[test]
    fn no_elapsed_tick_and_bad_text_give_nothing() {
        let a = parse(STAT_0, &own(1, 1)).unwrap();
        assert_eq!(between(&a, &a), None);
        assert_eq!(parse("intr 1\n", &own(1, 1)), None);
        assert_eq!(parse(STAT_0, "garbage"), None);
    }

    #[test]
    fn this_machine_reads() {
        if !std::path::Path::new("/proc/stat").exists() {
            return;
        }
        let a = CpuSnapshot::read().expect("readable /proc");
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(60) {
            std::hint::black_box(0u64);
        }
        let b = CpuSnapshot::read().unwrap();
        assert!(b.total >= a.total && b.own >= a.own);
        assert!(a.cpus >= 1);
    }
}

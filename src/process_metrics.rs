//! Process metrics read from `/proc/self` at each scrape, under the names every Prometheus
//! client library uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...),
//! so stock dashboards and alerts work.
//!
//! The prometheus crate's own `process` feature would pull in `procfs` and `libc`; these
//! seven numbers are a few lines of parsing. Elsewhere than Linux nothing is reported.

use std::collections::HashMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, Metric, MetricFamily, MetricType};

/// Clock ticks per second of `/proc/<pid>/stat` times: USER_HZ, which the kernel fixes at 100
/// on every architecture natter runs on (reading it needs `sysconf`, hence `unsafe`).
const TICKS_PER_SECOND: f64 = 100.0;

/// The metrics: name, help, type.
const METRICS: [(&str, &str, MetricType); 7] = [
    (
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        MetricType::COUNTER,
    ),
    (
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        MetricType::GAUGE,
    ),
    (
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        MetricType::GAUGE,
    ),
    (
        "process_open_fds",
        "Number of open file descriptors.",
        MetricType::GAUGE,
    ),
    (
        "process_max_fds",
        "Maximum number of open file descriptors.",
        MetricType::GAUGE,
    ),
    (
        "process_threads",
        "Number of OS threads.",
        MetricType::GAUGE,
    ),
    (
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch in seconds.",
        MetricType::GAUGE,
    ),
];

/// A collector of this process's CPU, memory, descriptors and threads.
#[derive(Debug)]
pub struct ProcessCollector {
    descs: Vec<Desc>,
}

impl ProcessCollector {
    /// The collector; register it in the registry `/metrics` serves.
    pub fn new() -> prometheus::Result<Self> {
        let descs = METRICS
            .iter()
            .map(|(name, help, _)| {
                Desc::new(
                    (*name).to_string(),
                    (*help).to_string(),
                    Vec::new(),
                    HashMap::new(),
                )
            })
            .collect::<prometheus::Result<_>>()?;
        Ok(Self { descs })
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(sample) = Sample::read() else {
            return Vec::new();
        };
        let values = [
            Some(sample.cpu_seconds),
            Some(sample.resident_bytes),
            Some(sample.virtual_bytes),
            sample.open_fds,
            sample.max_fds,
            Some(sample.threads),
            sample.start_time_seconds,
        ];
        METRICS
            .iter()
            .zip(values)
            .filter_map(|((name, help, kind), value)| {
                let value = value?;
                let mut metric = Metric::default();
                if *kind == MetricType::COUNTER {
                    let mut counter = Counter::default();
                    counter.set_value(value);
                    metric.set_counter(counter);
                } else {
                    let mut gauge = Gauge::default();
                    gauge.set_value(value);
                    metric.set_gauge(gauge);
                }
                let mut family = MetricFamily::default();
                family.set_name((*name).to_string());
                family.set_help((*help).to_string());
                family.set_field_type(*kind);
                family.set_metric(vec![metric]);
                Some(family)
            })
            .collect()
    }
}

/// One reading of `/proc/self`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    threads: f64,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
    start_time_seconds: Option<f64>,
}

impl Sample {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let mut sample = parse(&stat, &status)?;
        sample.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as f64);
        sample.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| max_open_files(&limits));
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| boot_time(&stat));
        sample.start_time_seconds = boot
            .zip(start_ticks(&stat))
            .map(|(boot, ticks)| boot + ticks / TICKS_PER_SECOND);
        Some(sample)
    }
}

/// The fields of `/proc/self/stat` after the command name, which may itself hold spaces and
/// parentheses; `fields()[0]` is field 3 of proc(5), `state`.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// Field `n` (numbered as in proc(5)) of `/proc/self/stat`, as a number.
fn stat_field(fields: &[&str], n: usize) -> Option<f64> {
    fields.get(n.checked_sub(3)?)?.parse().ok()
}

fn start_ticks(stat: &str) -> Option<f64> {
    stat_field(&stat_fields(stat)?, 22)
}

/// CPU time (utime 14, stime 15), threads (20) and virtual size (23) from `stat`, resident
/// size from `status` (`VmRSS`, in kB, which spares knowing the page size).
fn parse(stat: &str, status: &str) -> Option<Sample> {
    let fields = stat_fields(stat)?;
    let ticks = stat_field(&fields, 14)? + stat_field(&fields, 15)?;
    let resident_kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())?;
    Some(Sample {
        cpu_seconds: ticks / TICKS_PER_SECOND,
        resident_bytes: resident_kb * 1024.0,
        virtual_bytes: stat_field(&fields, 23)?,
        threads: stat_field(&fields, 20)?,
        open_fds: None,
        max_fds: None,
        start_time_seconds: None,
    })
}

/// The soft limit on open files from `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(f64::INFINITY),
        soft => soft.parse().ok(),
    }
}

/// The boot time from `/proc/stat`, in seconds since the Unix epoch.
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|seconds| seconds.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn proc_files_are_parsed() {
        // A command name with a space and a parenthesis, as proc(5) warns.
        let stat = "4242 (natter (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 130 0 0 20 0 \
                    9 0 123456 987654144 4321 18446744073709551615";
        let status = "Name:\tnatter\nVmRSS:\t   17408 kB\nThreads:\t9\n";
        let sample = parse(stat, status).unwrap();
        assert_eq!(sample.cpu_seconds, 3.8);
        assert_eq!(sample.resident_bytes, 17_408.0 * 1024.0);
        assert_eq!(sample.virtual_bytes, 987_654_144.0);
        assert_eq!(sample.threads, 9.0);
        assert_eq!(start_ticks(stat), Some(123_456.0));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                524288               files\n";
        assert_eq!(max_open_files(limits), Some(20_000.0));
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1732900000\n"),
            Some(1_732_900_000.0)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_measured() {
        let families = ProcessCollector::new().unwrap().collect();
        let value = |name: &str| {
            let family = families.iter().find(|f| f.name() == name).unwrap();
            let metric = &family.get_metric()[0];
            metric.get_gauge().get_value() + metric.get_counter().get_value()
        };
        assert_eq!(families.len(), 7);
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_threads") >= 1.0);
        assert!(value("process_start_time_seconds") > 1_600_000_000.0);
    }
}

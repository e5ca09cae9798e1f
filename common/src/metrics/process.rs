//! The process metrics every Prometheus client library exports under the same names
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, …),
//! read from `/proc/self` at each scrape (Linux; elsewhere none are exported).
//!
//! With them, `speedbox_log_lines_dropped_total`: lines the log writer dropped
//! ([`crate::telemetry`]).
//!
//! `procfs` parses `/proc` (the crate the TiKV Prometheus client uses for the same job):
//! clock ticks and page size come from the system, not from constants.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Exports the process metrics; costs a few reads of `/proc/self` per scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let dropped = ConstCounter::new(crate::telemetry::dropped_lines());
        let help = "Log lines dropped because too much was waiting to be written";
        one(e, "speedbox_log_lines_dropped", help, dropped)?;
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            let cpu = (stat.utime + stat.stime) as f64 / ticks;
            let rss = stat.rss * procfs::page_size();
            let start = procfs::boot_time_secs()
                .map(|boot| boot as f64 + stat.starttime as f64 / ticks)
                .unwrap_or_default();
            let help = "User and system CPU time";
            one(e, "process_cpu_seconds", help, ConstCounter::new(cpu))?;
            let help = "Resident set size";
            one(
                e,
                "process_resident_memory_bytes",
                help,
                ConstGauge::new(rss as i64),
            )?;
            let help = "Virtual memory size";
            one(
                e,
                "process_virtual_memory_bytes",
                help,
                ConstGauge::new(stat.vsize as i64),
            )?;
            let help = "Start time since the Unix epoch";
            one(
                e,
                "process_start_time_seconds",
                help,
                ConstGauge::new(start),
            )?;
            one(
                e,
                "process_threads",
                "Threads",
                ConstGauge::new(stat.num_threads),
            )?;
        }
        if let Ok(fds) = me.fd_count() {
            let help = "Open file descriptors";
            one(e, "process_open_fds", help, ConstGauge::new(fds as i64))?;
        }
        if let Ok(limits) = me.limits() {
            if let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit {
                let help = "Open file descriptor limit";
                one(e, "process_max_fds", help, ConstGauge::new(max as i64))?;
            }
        }
        Ok(())
    }
}

/// One unlabelled series, `metric`, as family `name`.
fn one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(m)
}

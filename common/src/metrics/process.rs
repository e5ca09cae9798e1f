//! The process metrics every Prometheus client library exports under the same names
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, …),
//! read from `/proc/self` at each scrape (Linux; elsewhere none are exported).
//!
//! With them, `speedbox_log_lines_dropped_total`: lines the non-blocking log writer dropped
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
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            let cpu = ConstCounter::new((stat.utime + stat.stime) as f64 / ticks);
            let rss = stat.rss * procfs::page_size();
            let start = procfs::boot_time_secs()
                .map(|boot| boot as f64 + stat.starttime as f64 / ticks)
                .unwrap_or_default();
            counter(
                &mut encoder,
                "process_cpu_seconds",
                "User and system CPU time",
                cpu,
            )?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident set size",
                rss as i64,
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size",
                stat.vsize as i64,
            )?;
            let start = ConstGauge::new(start);
            let m = encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time since the Unix epoch",
                None,
                start.metric_type(),
            )?;
            start.encode(m)?;
            gauge(&mut encoder, "process_threads", "Threads", stat.num_threads)?;
        }
        if let Ok(fds) = me.fd_count() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors",
                fds as i64,
            )?;
        }
        let dropped = ConstCounter::new(crate::telemetry::dropped_lines());
        let m = encoder.encode_descriptor(
            "speedbox_log_lines_dropped",
            "Log lines dropped because the log writer's queue was full",
            None,
            dropped.metric_type(),
        )?;
        dropped.encode(m)?;
        if let Ok(limits) = me.limits() {
            if let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit {
                gauge(
                    &mut encoder,
                    "process_max_fds",
                    "Open file descriptor limit",
                    max as i64,
                )?;
            }
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    let m = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    gauge.encode(m)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    counter: ConstCounter<f64>,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
    counter.encode(m)
}

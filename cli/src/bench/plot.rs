//! Charts of a bench report, as SVG: throughput against the peers, and latency percentiles.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::Report;

/// Write `throughput.svg` and `latency.svg` into `dir`.
pub(super) fn write(dir: &Path, r: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut bars = vec![
        ("weir produce", r.produce_msgs_per_s, BLUE),
        ("weir consume", r.consume_msgs_per_s, BLUE),
        ("weir pipeline", r.pipeline_msgs_per_s, BLUE),
        ("weir pipeline ×3", r.pipeline3_msgs_per_s, BLUE),
    ];
    let peers = [
        ("redis XADD", r.redis_xadd_msgs_per_s, RED),
        ("redis XREADGROUP", r.redis_xreadgroup_msgs_per_s, RED),
        ("jetstream publish", r.jetstream_publish_msgs_per_s, GREEN),
        ("jetstream consume", r.jetstream_consume_msgs_per_s, GREEN),
    ];
    bars.extend(peers.into_iter().filter_map(|(n, v, c)| v.map(|v| (n, v, c))));
    bar_chart(&dir.join("throughput.svg"), &format!("throughput, {}-byte messages (msg/s)", r.message_bytes), &bars)?;
    let latency = [
        ("p50", r.e2e_latency_p50_ms, BLUE),
        ("p99", r.e2e_latency_p99_ms, BLUE),
        ("p99.9", r.e2e_latency_p999_ms, BLUE),
    ];
    bar_chart(
        &dir.join("latency.svg"),
        &format!("weir end-to-end latency at {} msg/s (ms)", r.e2e_offered_msgs_per_s),
        &latency,
    )
}

fn bar_chart(path: &Path, title: &str, bars: &[(&str, f64, RGBColor)]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(f64::MIN_POSITIVE) * 1.15;
    let names: Vec<&str> = bars.iter().map(|b| b.0).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d((0..bars.len()).into_segmented(), 0.0..max)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_max_light_lines(0)
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => names.get(*i).map(|s| s.to_string()).unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|y| if max >= 10_000.0 { format!("{:.0}k", y / 1000.0) } else { format!("{y:.2}") })
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v, color))| {
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *v)],
                color.mix(0.7).filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            bar
        }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

//! The demo's picture: the same series as the table, over time, in three panels that read
//! top to bottom in the order the pressure travels: the producer's side, the consumer's side,
//! and who was running.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::Sample;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn kib(v: usize) -> f64 {
    v as f64 / 1024.0
}

/// A series drawn as steps (the value holds until the next sample), which is what sampled
/// states and buffer levels are.
fn steps(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    for (i, s) in samples.iter().enumerate() {
        if i > 0 {
            out.push((s.t, f(&samples[i - 1])));
        }
        out.push((s.t, f(s)));
    }
    out
}

fn legend(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
}

type Panel<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One panel: a caption, time on x, `0..top` on y.
fn panel<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    tmax: f64,
    top: f64,
) -> Result<Panel<'a, 'b>> {
    Ok(ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..tmax, 0.0..top)?)
}

/// A step series with its legend entry.
fn series<'a, 'b: 'a>(
    chart: &mut Panel<'a, 'b>,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    label: &str,
) -> Result<()> {
    chart
        .draw_series(LineSeries::new(points, color.stroke_width(2)))?
        .label(label)
        .legend(legend(color));
    Ok(())
}

fn legend_box<'a, 'b: 'a>(chart: &mut Panel<'a, 'b>) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Writes the plot to `path`.
pub fn write_svg(path: &str, samples: &[Sample], high: usize, low: usize) -> Result<()> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, (1100, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let tmax = samples.last().map_or(1.0, |s| s.t).max(0.1);
    // --via-relay: a panel for the relay between the producer's and the consumer's.
    let via = samples.iter().any(|s| s.relay.is_some());
    let panels = root.split_evenly((if via { 4 } else { 3 }, 1));
    let (consumer_panel, states_panel) = if via { (2, 3) } else { (1, 2) };
    let unknown = |v: Option<u32>| v.map_or(0.0, |v| f64::from(v) / 1024.0);
    let (blue, red, green, orange, gray) = (
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(120, 120, 120),
    );

    // 1. The producer: its queue against the marks, and the kernel's unsent bytes.
    let top = samples
        .iter()
        .map(|s| kib(s.queue).max(unknown(s.unsent)))
        .fold(kib(high), f64::max)
        * 1.5; // headroom for the legend
    let mut chart = panel(
        &panels[0],
        "producer: write queue and kernel send buffer",
        tmax,
        top,
    )?;
    chart
        .configure_mesh()
        .y_desc("KiB")
        .x_desc("t (s)")
        .draw()?;
    let light = RGBColor(190, 190, 190);
    for (mark, label, color) in [(high, "high-water", gray), (low, "low-water", light)] {
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, kib(mark)), (tmax, kib(mark))],
                color.stroke_width(1),
            ))?
            .label(label)
            .legend(legend(color));
    }
    series(
        &mut chart,
        steps(samples, |s| kib(s.queue)),
        blue,
        "write queue (application)",
    )?;
    series(
        &mut chart,
        steps(samples, |s| unknown(s.unsent)),
        orange,
        "unsent (kernel send buffer)",
    )?;
    legend_box(&mut chart)?;

    if via {
        relay_panel(&panels[1], samples, tmax, high, low)?;
    }

    // 2. The consumer: what waits unread in its kernel buffer, and the window it advertises.
    let top = samples
        .iter()
        .map(|s| unknown(s.unread).max(unknown(s.window)))
        .fold(1.0, f64::max)
        * 1.5;
    let mut chart = panel(
        &panels[consumer_panel],
        "consumer: kernel receive buffer and advertised window",
        tmax,
        top,
    )?;
    chart
        .configure_mesh()
        .y_desc("KiB")
        .x_desc("t (s)")
        .draw()?;
    series(
        &mut chart,
        steps(samples, |s| unknown(s.unread)),
        red,
        "unread (kernel receive buffer)",
    )?;
    series(
        &mut chart,
        steps(samples, |s| unknown(s.window)),
        green,
        "advertised window",
    )?;
    legend_box(&mut chart)?;

    // 3. Who was running: each state as a band that is high when "on".
    let base = if via { 1.0 } else { 0.0 };
    let mut chart = panel(
        &panels[states_panel],
        "states (high = on)",
        tmax,
        4.0 + base,
    )?;
    chart
        .configure_mesh()
        .x_desc("t (s)")
        .y_labels(0)
        .disable_y_mesh()
        .draw()?;
    let band = |base: f64, on: fn(&Sample) -> bool| {
        steps(samples, move |s| base + if on(s) { 0.8 } else { 0.0 })
    };
    series(
        &mut chart,
        band(2.1 + base, |s| s.generating),
        blue,
        "producer generating",
    )?;
    series(
        &mut chart,
        band(1.1 + base, |s| s.writable_interest),
        orange,
        "producer WRITABLE interest",
    )?;
    if via {
        series(
            &mut chart,
            band(1.1, |s| s.relay.is_some_and(|r| r.reading_producer)),
            green,
            "relay reading the producer (off: link pause)",
        )?;
    }
    series(
        &mut chart,
        band(0.1, |s| s.reading),
        red,
        "consumer reading",
    )?;
    legend_box(&mut chart)?;
    root.present()?;
    Ok(())
}

/// `--via-relay`: the relay's two queues against its marks, and the producer's bytes waiting
/// unread in its kernel receive buffer (what closes the producer's window).
fn relay_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    samples: &[Sample],
    tmax: f64,
    high: usize,
    low: usize,
) -> Result<()> {
    let relay = |s: &Sample, f: fn(&crate::RelaySample) -> f64| s.relay.as_ref().map_or(0.0, f);
    let unread = |r: &crate::RelaySample| r.unread_in.map_or(0.0, |v| f64::from(v) / 1024.0);
    let top = samples
        .iter()
        .map(|s| relay(s, |r| kib(r.upstream_queue)).max(relay(s, unread)))
        .fold(kib(high), f64::max)
        * 1.5;
    let mut chart = panel(
        area,
        "relay: its queue to the consumer, its queue to the producer, and the producer's unread bytes",
        tmax,
        top,
    )?;
    chart
        .configure_mesh()
        .y_desc("KiB")
        .x_desc("t (s)")
        .draw()?;
    let (gray, light) = (RGBColor(120, 120, 120), RGBColor(190, 190, 190));
    for (mark, label, color) in [(high, "high-water", gray), (low, "low-water", light)] {
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, kib(mark)), (tmax, kib(mark))],
                color.stroke_width(1),
            ))?
            .label(label)
            .legend(legend(color));
    }
    series(
        &mut chart,
        steps(samples, |s| relay(s, |r| kib(r.upstream_queue))),
        RGBColor(148, 103, 189),
        "relay queue to the consumer",
    )?;
    series(
        &mut chart,
        steps(samples, |s| relay(s, |r| kib(r.client_queue))),
        RGBColor(140, 86, 75),
        "relay queue to the producer",
    )?;
    series(
        &mut chart,
        steps(samples, |s| relay(s, unread)),
        RGBColor(23, 190, 207),
        "producer's bytes unread at the relay (kernel)",
    )?;
    legend_box(&mut chart)?;
    Ok(())
}

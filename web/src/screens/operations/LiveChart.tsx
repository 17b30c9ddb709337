// A small live line chart: uPlot (canvas, about 50 kB minified) made once, fed new data on
// every render; the newest value of each series is also written out as text beside it.

import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  label: string;
  color: string;
  values: (number | null)[];
}

const WIDTH = 440;
const HEIGHT = 160;

export function LiveChart({ title, testid, times, series }: { title: string; testid: string; times: number[]; series: Series[] }) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = series.map((s) => `${s.label}:${s.color}`).join("|");

  useEffect(() => {
    if (!host.current) return;
    const opts: uPlot.Options = {
      width: WIDTH,
      height: HEIGHT,
      legend: { show: false }, // the newest values are written out below the chart
      cursor: { show: false },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.15)] } },
      axes: [{ size: 28 }, { size: 44 }],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, spanGaps: true }))],
    };
    plot.current = new uPlot(opts, [times, ...series.map((s) => s.values)] as uPlot.AlignedData, host.current);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
    // Remade only when the series themselves change (a consumer appears).
  }, [shape]);

  useEffect(() => {
    plot.current?.setData([times, ...series.map((s) => s.values)] as uPlot.AlignedData);
  });

  return (
    <figure class="chart" data-testid={testid} data-points={times.length}>
      <figcaption>{title}</figcaption>
      <div ref={host} />
      <div class="latest" data-testid={`${testid}-latest`}>
        {series.map((s) => {
          const v = s.values[s.values.length - 1];
          return (
            <span data-series={s.label} data-value={v ?? ""} style={{ color: s.color }}>
              {s.label}: {v === null || v === undefined ? "—" : Number.isInteger(v) ? v : v.toFixed(1)}
            </span>
          );
        })}
      </div>
    </figure>
  );
}

"""The report's figures: matplotlib (Agg) rendered to inline SVG strings.

Run as: used by gradual.report.write_report (`gradual report DIR`).

Text is drawn as paths (matplotlib's default svg.fonttype), so a figure looks the same on any
machine with no font installed, and nothing in the SVG points outside the file.
"""

from __future__ import annotations

import io
import math
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

from gradual.categories import CATEGORIES, HIGHLY, WEAKLY  # noqa: E402

CATEGORY_COLORS = dict(zip(CATEGORIES, ("#2166ac", "#67a9cf", "#ef8a62", "#bdbdbd")))  # dark = better known
SERIES_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
INK, GRID = "#333333", "#e6e6e6"


def tick_label(name: str) -> str:
    """'HighlyKnown' -> 'Highly\\nKnown': category names fit under a bar on two lines."""
    return name[:-5] + "\nKnown" if name.endswith("Known") and len(name) > 5 else name


_STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "axes.edgecolor": "#999999",
    "axes.labelcolor": INK, "xtick.color": INK, "ytick.color": INK, "axes.spines.top": False,
    "axes.spines.right": False, "legend.frameon": False, "svg.fonttype": "path",
}


def to_svg(fig: Any) -> str:
    """Serialize a figure to an <svg> element fit for inlining (no XML prolog, no DOCTYPE)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    svg = buf.getvalue()
    # Drop <?xml?> and the DOCTYPE (which names a remote DTD); the natural size stays as the
    # width/height attributes, and the page's CSS (max-width: 100%) only ever shrinks it.
    return svg[svg.index("<svg"):]


def _figure(n: int, width_per: float, height: float, sharey: bool = False, max_cols: int = 4) -> tuple[Any, list[Any]]:
    """n panels in rows of at most max_cols; returns the figure and the n axes used."""
    cols = max(1, min(n, max_cols))
    rows = math.ceil(max(n, 1) / cols)
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(max(width_per * cols, 3.5), height * rows), sharey=sharey,
                                 squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[max(n, 1):]:
        ax.set_visible(False)
    return fig, flat[: max(n, 1)]


def _style(ax: Any) -> None:
    with plt.rc_context(_STYLE):
        ax.grid(axis="y", color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)


def category_bars(groups: Mapping[str, Sequence[tuple[str, Mapping[str, float]]]]) -> str:
    """Stacked bars of item counts per category, one bar per stage, one panel per group."""
    with plt.rc_context(_STYLE):
        fig, axes = _figure(len(groups), 1.6 + 0.75 * max(len(v) for v in groups.values()), 3.2, sharey=True,
                            max_cols=2 if len(groups) > 2 else 4)
        for ax, (title, levels) in zip(axes, groups.items()):
            _style(ax)
            xs = range(len(levels))
            bottom = [0.0] * len(levels)
            totals = [sum(c.values()) or 1 for _, c in levels]
            for cat in CATEGORIES:
                vals = [float(c.get(cat) or 0) for _, c in levels]
                bars = ax.bar(xs, vals, bottom=bottom, color=CATEGORY_COLORS[cat], width=0.62, label=cat,
                              edgecolor="white", linewidth=0.6)
                for b, v, base, tot in zip(bars, vals, bottom, totals):
                    if v / tot >= 0.07:  # label only segments tall enough to hold the text
                        ax.text(b.get_x() + b.get_width() / 2, base + v / 2, f"{v:.0f}" if v == int(v) else f"{v:.1f}",
                                ha="center", va="center", fontsize=7.5,
                                color="white" if cat in (HIGHLY, WEAKLY) else INK)
                bottom = [b + v for b, v in zip(bottom, vals)]
            ax.set_xticks(list(xs), [lbl for lbl, _ in levels], rotation=0)
            ax.set_title(title, loc="left")
        axes[0].set_ylabel("train items")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles[::-1], labels[::-1], loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.tight_layout()
        return to_svg(fig)


def transition_heatmaps(mats: Mapping[str, Sequence[Sequence[float]]], labels: Sequence[str]) -> str:
    """Base -> final category transitions: rows = before, columns = after; color = share of the row."""
    short = [tick_label(lbl) for lbl in labels]
    with plt.rc_context(_STYLE):
        fig, axes = _figure(len(mats), 3.4, 3.3, max_cols=2 if len(mats) > 2 else 4)
        for ax, (title, m) in zip(axes, mats.items()):
            shares = [[v / (sum(row) or 1) for v in row] for row in m]
            ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
            for i, row in enumerate(m):
                for j, v in enumerate(row):
                    txt = f"{v:.0f}" if float(v) == int(v) else f"{v:.1f}"
                    ax.text(j, i, f"{txt}\n{100 * shares[i][j]:.0f}%", ha="center", va="center", fontsize=7.5,
                            color="white" if shares[i][j] > 0.55 else INK)
            ax.set_xticks(range(len(labels)), short)
            ax.set_yticks(range(len(labels)), short)
            ax.set_xlabel("after training")
            ax.set_ylabel("before (base model)")
            ax.set_title(title, loc="left")
            for side in ax.spines.values():
                side.set_visible(False)
        fig.tight_layout()
        return to_svg(fig)


def grouped_bars(series: Mapping[str, Mapping[str, Mapping[str, float | None]]], groups: Sequence[str],
                 ylabel: str, percent: bool = True, ncols_panels: Sequence[Sequence[str]] | None = None) -> str:
    """Bars of mean per group (x) and series (color), with 95% interval error bars where there are several
    seeds. series[name][group] = {"mean", "lo", "hi"}; ncols_panels splits groups into panels."""
    panels = list(ncols_panels) if ncols_panels else [list(groups)]
    names = list(series)
    k = max(len(names), 1)
    with plt.rc_context(_STYLE):
        fig, axes = _figure(len(panels), 1.1 + 0.38 * k * max(len(p) for p in panels), 3.2)
        for ax, panel in zip(axes, panels):
            _style(ax)
            width = 0.8 / k
            for si, name in enumerate(names):
                xs, ys, err_lo, err_hi = [], [], [], []
                for gi, g in enumerate(panel):
                    ci = series[name].get(g) or {}
                    mean = ci.get("mean")
                    if mean is None:
                        continue
                    scale = 100.0 if percent else 1.0
                    xs.append(gi - 0.4 + width * (si + 0.5))
                    ys.append(mean * scale)
                    lo = ci.get("lo") if ci.get("lo") is not None else mean
                    hi = ci.get("hi") if ci.get("hi") is not None else mean
                    err_lo.append(max(mean - lo, 0) * scale)
                    err_hi.append(max(hi - mean, 0) * scale)
                if xs:
                    ax.bar(xs, ys, width=width * 0.92, color=SERIES_COLORS[si % len(SERIES_COLORS)], label=name)
                    if any(err_lo) or any(err_hi):
                        ax.errorbar(xs, ys, yerr=[err_lo, err_hi], fmt="none", ecolor=INK, elinewidth=1, capsize=2.5)
            ax.set_xticks(range(len(panel)), [tick_label(g) for g in panel])
            ax.set_xlim(-0.6, len(panel) - 0.4)
            if percent:
                ax.set_ylim(0, max(5.0, ax.get_ylim()[1]))
        axes[0].set_ylabel(ylabel)
        if len(names) > 1:
            fig.legend(*axes[0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.tight_layout()
        return to_svg(fig)


def _loss_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: list[str] = []
    for r in rows:
        for k, v in r.items():
            if "loss" in k and isinstance(v, (int, float)) and not isinstance(v, bool) and k not in keys:
                keys.append(k)
    return keys


def best_epoch(rows: Sequence[Mapping[str, Any]]) -> int | None:
    """The row flagged best; else the epoch with the highest dev accuracy (first on ties)."""
    for r in rows:
        if r.get("best") is True:
            return r.get("epoch")
    scored = [r for r in rows if isinstance(r.get("dev_accuracy"), (int, float))]
    return max(scored, key=lambda r: r["dev_accuracy"]).get("epoch") if scored else None


def training_curves(panels: Sequence[tuple[str, Sequence[tuple[str, Sequence[Mapping[str, Any]]]]]]) -> str:
    """Per stage: loss per epoch (left axis) and dev accuracy (dashed, right axis); the best epoch is
    ringed. Several runs (seeds) in one panel are overlaid, one color each; line style = metric."""
    from matplotlib.lines import Line2D

    styles = ("-", ":", "-.")
    loss_keys: list[str] = []
    labels: list[str] = []
    with plt.rc_context(_STYLE):
        fig, axes = _figure(len(panels), 3.6, 2.8, max_cols=3)
        for ax, (title, runs) in zip(axes, panels):
            _style(ax)
            acc_ax = ax.twinx()
            acc_ax.spines["top"].set_visible(False)
            for ri, (label, rows) in enumerate(runs):
                if label not in labels:
                    labels.append(label)
                color = SERIES_COLORS[labels.index(label) % len(SERIES_COLORS)]
                rows = sorted((r for r in rows if isinstance(r.get("epoch"), (int, float))), key=lambda r: r["epoch"])
                for key in _loss_keys(rows):
                    if key not in loss_keys:
                        loss_keys.append(key)
                    pts = [(r["epoch"], r[key]) for r in rows if isinstance(r.get(key), (int, float))
                           and math.isfinite(r[key])]
                    if pts:
                        ax.plot(*zip(*pts), color=color, linestyle=styles[loss_keys.index(key) % 3], marker="o",
                                markersize=2.5, linewidth=1.2)
                acc = [(r["epoch"], 100 * r["dev_accuracy"]) for r in rows if isinstance(r.get("dev_accuracy"), (int, float))]
                if acc:
                    acc_ax.plot(*zip(*acc), color=color, linestyle="--", marker="s", markersize=2.5, linewidth=1.2,
                                alpha=0.85)
                    best = best_epoch(rows)
                    hit = [a for a in acc if a[0] == best]
                    if hit:
                        acc_ax.plot([hit[0][0]], [hit[0][1]], marker="o", markersize=10, markerfacecolor="none",
                                    markeredgecolor="#d62728", markeredgewidth=1.6, linestyle="none")
                        ax.axvline(hit[0][0], color="#d62728", linewidth=0.8, alpha=0.4)
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss")
            acc_ax.set_ylabel("dev accuracy (%)")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_title(title, loc="left")
        # One legend for the figure: line style = metric, color = run (seed), ring = best epoch.
        handles = [Line2D([], [], color=INK, linestyle=styles[i % 3], label=k) for i, k in enumerate(loss_keys)]
        handles.append(Line2D([], [], color=INK, linestyle="--", marker="s", markersize=3, label="dev accuracy"))
        handles.append(Line2D([], [], color="#d62728", marker="o", markersize=8, markerfacecolor="none",
                              linestyle="none", label="best dev epoch (kept)"))
        handles += [Line2D([], [], color=SERIES_COLORS[i % len(SERIES_COLORS)], linewidth=3, label=lbl)
                    for i, lbl in enumerate(labels) if lbl]
        fig.tight_layout()
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 5), fontsize=8)
        return to_svg(fig)


def empty(message: str) -> str:
    """A small placeholder figure, so a chart slot never silently disappears."""
    with plt.rc_context(_STYLE):
        fig, axes = _figure(1, 4.0, 1.0)
        axes[0].axis("off")
        axes[0].text(0.5, 0.5, message, ha="center", va="center", color="#777777")
        return to_svg(fig)

"""mIoU-over-the-stream line plots (one line per method), rendered headless with Agg."""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence

from stag_seg.reports.atomic import atomic_write
from stag_seg.reports.records import is_adapted


def _stream(records_by_method: dict[str, Sequence[dict]]) -> tuple[list[int], list[str]]:
    """Rounds and adapted domains (in order of first appearance) over all methods."""
    rounds, domains = set(), []
    for records in records_by_method.values():
        for r in records:
            rounds.add(r['round'])
            if is_adapted(r) and r['domain'] not in domains:
                domains.append(r['domain'])
    return sorted(rounds), domains


def plot_miou(records_by_method: dict[str, Sequence[dict]], path: str):
    """Plot mIoU at each stream position (round, domain), one line per method, to ``path``
    (written atomically; the format follows the extension, png by default); returns the
    matplotlib Figure. The legend sits right of the axes, off the data.

    No-update (forgetting) records are drawn dashed at the end of their round; an undefined
    (null) mIoU leaves a gap in its line.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    nan = float('nan')
    rounds, domains = _stream(records_by_method)
    pos = {(rnd, d): i * len(domains) + j
           for i, rnd in enumerate(rounds) for j, d in enumerate(domains)}
    round_end = {rnd: (i + 1) * len(domains) - 1 for i, rnd in enumerate(rounds)}
    fig = Figure(figsize=(max(6.0, 0.45 * len(pos) + 2), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for method, records in records_by_method.items():
        last = {}
        for r in records:  # a later duplicate wins, as in the tables
            miou = r['mIoU']
            last[(r['round'], r['domain'], is_adapted(r))] = nan if miou is None else miou
        pts = sorted((pos[(rnd, d)], v) for (rnd, d, flag), v in last.items() if flag)
        line = ax.plot([p for p, _ in pts], [v for _, v in pts], marker='o', ms=3,
                       label=method)[0]
        for dom in dict.fromkeys(d for (_, d, flag) in last if not flag):
            fpts = sorted((round_end[rnd], v) for (rnd, d, flag), v in last.items()
                          if not flag and d == dom)
            ax.plot([p for p, _ in fpts], [v for _, v in fpts], ls='--', marker='x', ms=4,
                    color=line.get_color(), label=f'{method}: {dom} (no update)')
    for i in range(1, len(rounds)):
        ax.axvline(i * len(domains) - 0.5, color='0.8', lw=0.8, zorder=0)
    if pos:
        ax.set_xticks(range(len(pos)))
        ax.set_xticklabels([d for _ in rounds for d in domains], rotation=90, fontsize=7)
        ax.set_xlim(-0.5, len(pos) - 0.5)
    for i, rnd in enumerate(rounds):
        ax.text((i + 0.5) * len(domains) - 0.5, 1.01, f'round {rnd}', ha='center',
                va='bottom', fontsize=7, transform=ax.get_xaxis_transform())
    ax.set_ylabel('mIoU (%)')
    ax.grid(axis='y', alpha=0.3)
    if records_by_method:
        ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fmt = osp.splitext(path)[1][1:].lower() or 'png'
    with atomic_write(path, 'wb') as f:
        fig.savefig(f, format=fmt, dpi=120, bbox_inches='tight')
    return fig

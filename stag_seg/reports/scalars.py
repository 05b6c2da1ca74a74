"""A run's visualizer scalars (LocalVisBackend's vis_data/scalars.json) as curves in one figure.

    python -m stag_seg.reports.scalars WORK_DIR OUT.png

Plots what :class:`~stag_seg.engine.scalars_hook.StreamScalarsHook` wrote in the run's latest
log dir: the step loss terms over images, and the per-domain and round-mean mIoU over rounds
(the README's visualizer figure is made this way).
"""
from __future__ import annotations

import glob
import json
import os.path as osp
import sys


def load_scalars(path: str) -> dict[str, list[tuple[int, float]]]:
    """scalars.json (one object per ``add_scalars`` call, with its ``step``) as
    ``{tag: [(step, value), ...]}`` in file order."""
    out: dict[str, list[tuple[int, float]]] = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            step = row.pop('step')
            for tag, value in row.items():
                out.setdefault(tag, []).append((step, value))
    return out


def latest_scalars_file(work_dir: str) -> str:
    """The newest ``<work_dir>/<time>/vis_data/scalars.json``; FileNotFoundError if none."""
    found = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not found:
        raise FileNotFoundError(f'{work_dir}: no */vis_data/scalars.json (a stream run with '
                                "the visualizer's LocalVisBackend writes one)")
    return found[-1]


def plot_scalars(work_dir: str, out: str) -> str:
    """Two panels: ``step/loss*`` over images; ``<domain>/mIoU`` and ``round/mIoU`` over
    rounds. Returns ``out``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    scalars = load_scalars(latest_scalars_file(work_dir))
    fig, (losses, miou) = plt.subplots(1, 2, figsize=(11, 3.8))
    for tag, points in scalars.items():
        if tag.startswith('step/loss'):
            losses.plot(*zip(*points, strict=True), label=tag[len('step/'):], lw=1)
        elif tag.endswith('/mIoU'):
            style = dict(lw=2.5, color='k') if tag == 'round/mIoU' else dict(lw=1, marker='.')
            label = 'round mean' if tag == 'round/mIoU' else tag.split('/')[0]
            miou.plot(*zip(*points, strict=True), label=label, **style)
    losses.set(xlabel='images streamed', ylabel='loss term', title='step/<term>')
    miou.xaxis.set_major_locator(MaxNLocator(integer=True))
    miou.set(xlabel='round', ylabel='mIoU (%)', title='<domain>/mIoU and round/mIoU')
    for ax in (losses, miou):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__.split('\n\n')[1].strip())
    print(plot_scalars(sys.argv[1], sys.argv[2]))

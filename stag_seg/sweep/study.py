"""The STAG study's rule for the defaults (docs/study.md), applied to a finished sweep."""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence
from dataclasses import dataclass, field

from stag_seg.sweep.aggregate import PairedSummary

#: settings whose worst-case gains are within this of the best are ranked by mean gain
TIE_MIOU = 0.05


@dataclass(frozen=True)
class SettingGains:
    """A setting's paired gain (mean over seeds, mIoU points) in each regime, and the number
    of seed pairs behind each (empty: not known)."""

    method: str
    gains: dict[str, float]
    n: dict[str, int] = field(default_factory=dict)

    @property
    def worst(self) -> float:
        return min(self.gains.values())

    @property
    def mean(self) -> float:
        return sum(self.gains.values()) / len(self.gains)


def setting_gains(pairs: Sequence[PairedSummary], metric: str = 'mean_miou',
                  methods: Sequence[str] | None = None) -> list[SettingGains]:
    """Per paired method (the STAG settings; ``methods`` to restrict), its gain per regime.

    A method with a regime without paired runs is left out (its worst case is unknown).
    """
    regimes = list(dict.fromkeys(pair.regime for pair in pairs))
    by_method: dict[str, dict[str, float | None]] = {}
    counts: dict[str, dict[str, int]] = {}
    for pair in pairs:
        if methods is None or pair.method in methods:
            by_method.setdefault(pair.method, {})[pair.regime] = pair.diffs[metric].mean
            counts.setdefault(pair.method, {})[pair.regime] = pair.diffs[metric].n
    return [SettingGains(m, {r: g[r] for r in regimes}, {r: counts[m][r] for r in regimes})
            for m, g in by_method.items() if all(g.get(r) is not None for r in regimes)]


def choose_default(settings: Sequence[SettingGains], tie: float = TIE_MIOU) -> SettingGains:
    """The setting with the best worst-case gain; those within ``tie`` of it are ranked by
    their mean gain over the regimes."""
    if not settings:
        raise ValueError('no setting has paired results in every regime')
    best = max(s.worst for s in settings)
    contenders = [s for s in settings if s.worst >= best - tie]
    return max(contenders, key=lambda s: (s.mean, s.worst))


def gains_table(settings: Sequence[SettingGains], chosen: SettingGains | None = None) -> str:
    """Markdown: one row per setting (sorted by worst case), gain per regime (with its number
    of seed pairs, where known), worst, mean."""
    regimes = list(settings[0].gains) if settings else []
    lines = ['| setting | ' + ' | '.join(regimes) + ' | worst case | mean |',
             '|---|' + '---:|' * (len(regimes) + 2)]
    for s in sorted(settings, key=lambda s: (s.worst, s.mean), reverse=True):
        name = f'**{s.method}**' if chosen is not None and s.method == chosen.method else s.method
        cells = [f'{s.gains[r]:+.2f}' + (f' (n={s.n[r]})' if r in s.n else '')
                 for r in regimes]
        lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {s.worst:+.2f} | {s.mean:+.2f} |')
    return '\n'.join(lines)


def _seeds(spec, scores, method: str, regime: str) -> list[int]:
    return sorted(r.seed for r in spec.runs
                  if r.method == method and r.regime == regime and r.name in scores)


def incomplete_cells(spec, scores, methods: Sequence[str]) -> dict[str, list[str]]:
    """Per setting, its (regime) cells whose finished seeds are not the spec's seeds or not
    its baseline's: comparing such a cell with the others would weigh unequal seed sets."""
    seeds = sorted({r.seed for r in spec.runs})
    regimes = list(dict.fromkeys(r.regime for r in spec.runs))
    out: dict[str, list[str]] = {}
    for method in methods:
        baseline = spec.baselines[method]
        for regime in regimes:
            own, base = _seeds(spec, scores, method, regime), _seeds(spec, scores, baseline,
                                                                      regime)
            if own != seeds or base != seeds:
                out.setdefault(method, []).append(
                    f'{regime}: seeds {own}, {baseline} {base} (of {seeds})')
    return out


def defaults_report(spec_path: str, out_dir: str, prefix: str = 'stag-',
                    partial: bool = False) -> str:
    """The study's rule applied to a sweep's finished runs: the gains table and the choice
    (markdown), also written atomically to ``out_dir/defaults.md``.

    The STAG settings are the sweep's methods whose names start with ``prefix``; each is
    paired with its baseline on the same seed and regime. A setting with a cell whose finished
    seeds are not all the spec's seeds, for it and its baseline, is refused (ValueError), or
    with ``partial`` left out of the choice and listed.
    """
    from stag_seg.reports.atomic import atomic_write
    from stag_seg.sweep import load_spec, paired_differences
    from stag_seg.sweep.driver import collect_scores

    spec = load_spec(spec_path)
    all_methods = list(dict.fromkeys(r.method for r in spec.runs))
    methods = [m for m in all_methods if m.startswith(prefix)]
    if not methods:
        raise ValueError(f'{spec_path}: no method name starts with {prefix!r} (methods: '
                         f'{", ".join(all_methods)}); name the STAG settings with --prefix')
    unpaired = [m for m in methods if spec.baselines.get(m) is None]
    if unpaired:
        raise ValueError(f'{spec_path}: {", ".join(unpaired)} have no baseline to be paired '
                         "with; set baseline='...' in the spec")
    if not osp.isdir(out_dir):
        raise ValueError(f'{out_dir}: no such directory (the sweep\'s --out)')
    scores = collect_scores(spec, out_dir)
    if not scores:
        raise ValueError(f'{out_dir}: no finished run of the sweep {spec.name}; run '
                         f'tools/sweep.py {spec_path} --out {out_dir} first')
    incomplete = incomplete_cells(spec, scores, methods)
    if incomplete and not partial:
        first = next(iter(incomplete.items()))
        raise ValueError(f'{out_dir}: incomplete sweep: {len(incomplete)} of {len(methods)} '
                         f'settings have cells with missing seeds (first: {first[0]}, '
                         f'{first[1][0]}); finish it (tools/sweep.py --resume) or pass '
                         '--partial to decide among the complete settings')
    complete = [m for m in methods if m not in incomplete]
    settings = setting_gains(paired_differences(spec.runs, scores, spec.baselines),
                             methods=complete)
    if not settings:
        raise ValueError(f'{out_dir}: no STAG setting has finished runs with its baseline in '
                         'every regime')
    chosen = choose_default(settings)
    baselines = ', '.join(dict.fromkeys(spec.baselines[m] for m in complete))
    text = (f'Paired gain over {baselines} (overall mean mIoU, mean over n seed pairs), per '
            f'regime; {len(scores)} finished runs.\n\n{gains_table(settings, chosen)}\n\n'
            f'Chosen by the rule: **{chosen.method}** (worst case {chosen.worst:+.2f}, mean '
            f'{chosen.mean:+.2f}).\n')
    if incomplete:
        text += ('\n**INCOMPLETE: left out of the choice** (seed sets differ from the spec\'s '
                 'or the baseline\'s):\n' + ''.join(f'- {m}: {"; ".join(cells)}\n'
                                                    for m, cells in incomplete.items()))
    with atomic_write(f'{out_dir}/defaults.md') as f:
        f.write(text)
    return text

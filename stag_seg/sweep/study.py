"""The STAG study's rule for the defaults (docs/study.md), applied to a finished sweep."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stag_seg.sweep.aggregate import PairedSummary

#: settings whose worst-case gains are within this of the best are ranked by mean gain
TIE_MIOU = 0.05


@dataclass(frozen=True)
class SettingGains:
    """A setting's paired gain (mean over seeds, mIoU points) in each regime."""

    method: str
    gains: dict[str, float]

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
    for pair in pairs:
        if methods is None or pair.method in methods:
            by_method.setdefault(pair.method, {})[pair.regime] = pair.diffs[metric].mean
    return [SettingGains(m, {r: g[r] for r in regimes}) for m, g in by_method.items()
            if all(g.get(r) is not None for r in regimes)]


def choose_default(settings: Sequence[SettingGains], tie: float = TIE_MIOU) -> SettingGains:
    """The setting with the best worst-case gain; those within ``tie`` of it are ranked by
    their mean gain over the regimes."""
    if not settings:
        raise ValueError('no setting has paired results in every regime')
    best = max(s.worst for s in settings)
    contenders = [s for s in settings if s.worst >= best - tie]
    return max(contenders, key=lambda s: (s.mean, s.worst))


def gains_table(settings: Sequence[SettingGains], chosen: SettingGains | None = None) -> str:
    """Markdown: one row per setting (sorted by worst case), gain per regime, worst, mean."""
    regimes = list(settings[0].gains) if settings else []
    lines = ['| setting | ' + ' | '.join(regimes) + ' | worst case | mean |',
             '|---|' + '---:|' * (len(regimes) + 2)]
    for s in sorted(settings, key=lambda s: (s.worst, s.mean), reverse=True):
        name = f'**{s.method}**' if chosen is not None and s.method == chosen.method else s.method
        cells = [f'{s.gains[r]:+.2f}' for r in regimes]
        lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {s.worst:+.2f} | {s.mean:+.2f} |')
    return '\n'.join(lines)


def defaults_report(spec_path: str, out_dir: str, prefix: str = 'stag-') -> str:
    """The study's rule applied to a sweep's finished runs: the gains table and the choice
    (markdown), also written atomically to ``out_dir/defaults.md``.

    The STAG settings are the sweep's methods whose names start with ``prefix``; each is
    paired with the sweep's baseline on the same seed and regime.
    """
    from stag_seg.reports.atomic import atomic_write
    from stag_seg.sweep import load_spec, paired_differences
    from stag_seg.sweep.driver import collect_scores

    spec = load_spec(spec_path)
    scores = collect_scores(spec, out_dir)
    methods = [m for m in dict.fromkeys(r.method for r in spec.runs) if m.startswith(prefix)]
    settings = setting_gains(paired_differences(spec.runs, scores, spec.baselines),
                             methods=methods)
    if not settings:
        raise ValueError(f'{spec_path}: no STAG setting has finished paired runs in {out_dir}')
    chosen = choose_default(settings)
    text = (f'Paired gain over {spec.baseline} (overall mean mIoU, mean over seeds), per '
            f'regime; {len(scores)} finished runs.\n\n{gains_table(settings, chosen)}\n\n'
            f'Chosen by the rule: **{chosen.method}** (worst case {chosen.worst:+.2f}, mean '
            f'{chosen.mean:+.2f}).\n')
    with atomic_write(f'{out_dir}/defaults.md') as f:
        f.write(text)
    return text

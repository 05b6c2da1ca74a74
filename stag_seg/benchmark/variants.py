"""The benchmarked step variants: every registered TTA method, STAG's forms on TENT, and TENT
with each speed option."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from stag_seg.plugins.stag import STAG_DEFAULTS
from stag_seg.registry import TTA_METHODS

#: the baseline every ratio is taken to
BASELINE = 'tent'
#: STAG's forms on TENT: name suffix -> STAGHook options (the rest are STAG_DEFAULTS)
STAG_FORMS = {
    'feature, kspace': dict(grad_space='feature', impl='kspace'),
    'classifier': dict(grad_space='classifier'),
    'feature, naive': dict(grad_space='feature', impl='naive'),
}
#: the forms the overhead targets apply to (the naive C-space form is a reference only)
STAG_TARGETED = ('feature, kspace', 'classifier')
#: speed options on TENT: name -> test_cfg options (engine/speed.py, the adapter's amp)
SPEED_VARIANTS = {
    'bf16': dict(amp='bf16'),
    'tf32': dict(tf32=True),
    'channels_last': dict(channels_last=True),
    'compile': dict(compile=True),
}


@dataclass
class Variant:
    """One benchmarked step: a TTA method, its plug-ins and the loop options it runs with.

    Attributes:
        name: the row's name in the table and the JSON.
        method: a ``TTA_METHODS`` config (``dict(type=...)``).
        plugins: ``TTAPlugin`` hook configs (e.g. ``dict(type='STAGHook', ...)``).
        options: ``test_cfg`` options on top of the config's (``amp``, ``tf32``,
            ``channels_last``, ``compile``).
    """

    name: str
    method: dict
    plugins: list[dict] = field(default_factory=list)
    options: dict = field(default_factory=dict)


def stag_name(form: str) -> str:
    return f'{BASELINE} + STAG ({form})'


def speed_name(option: str) -> str:
    return f'{BASELINE} [{option}]'


def hook_default_variant() -> str:
    """The variant that STAGHook's default ``grad_space`` runs."""
    form = 'classifier' if STAG_DEFAULTS['grad_space'] == 'classifier' else 'feature, kspace'
    return stag_name(form)


def registered_methods() -> list[str]:
    """Every method in ``TTA_METHODS``: 'source' first, then TENT, then the rest by name."""
    names = sorted(TTA_METHODS.module_dict)
    first = [n for n in ('source', BASELINE) if n in names]
    return first + [n for n in names if n not in first]


def build_variants(methods: Sequence[str] | None = None,
                   speed: Sequence[str] = ()) -> list[Variant]:
    """The variant list: each of ``methods`` (default: every registered method; TENT, the
    baseline, is always in), then TENT + each STAG form, then TENT with each ``speed`` option
    (keys of :data:`SPEED_VARIANTS`). Unknown names are a ValueError listing the valid ones.
    """
    registered = registered_methods()
    if BASELINE not in registered:
        raise ValueError(f'the baseline method {BASELINE!r} is not registered in TTA_METHODS')
    chosen = registered if methods is None else list(dict.fromkeys(methods))
    unknown = [m for m in chosen if m not in registered]
    if unknown:
        raise ValueError(f'--methods: unknown method(s) {unknown}; registered: {registered}')
    bad_speed = [s for s in speed if s not in SPEED_VARIANTS]
    if bad_speed:
        raise ValueError(f'--speed: unknown option(s) {bad_speed}; valid: '
                         f'{list(SPEED_VARIANTS)}')
    if BASELINE not in chosen:
        chosen.insert(1 if 'source' in chosen else 0, BASELINE)
    variants = [Variant(m, dict(type=m)) for m in chosen]
    variants += [Variant(stag_name(form), dict(type=BASELINE),
                         plugins=[dict(type='STAGHook', **options)])
                 for form, options in STAG_FORMS.items()]
    variants += [Variant(speed_name(s), dict(type=BASELINE), options=dict(SPEED_VARIANTS[s]))
                 for s in dict.fromkeys(speed)]
    return variants

"""The benchmarked step variants: every registered TTA method with its stream config's options,
each method + STAG (its shipped ``-stag`` config), STAG's forms on TENT, and TENT with each
speed option."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stag_seg.benchmark.method_configs import (
    MethodSpec,
    find_stream_config,
    method_spec,
    stag_spec,
)
from stag_seg.plugins.stag import STAG_DEFAULTS
from stag_seg.registry import TTA_METHODS

#: the baseline every "x tent" ratio is taken to
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
        method: a ``TTA_METHODS`` config (``dict(type=..., **kwargs)``).
        plugins: ``TTAPlugin`` hook configs (e.g. ``dict(type='STAGHook', ...)``).
        options: ``test_cfg`` options on top of the config's (``amp``, ``tf32``,
            ``channels_last``, ``compile``).
        base: the variant this one adds to (a method + STAG's method alone; None for a
            method): its time and memory are compared with the base's.
        stream_config: the stream config whose method this is and whose pipeline makes its
            batch (None: the benchmarked config's).
        model_test_cfg: the model's ``test_cfg`` from the stream config where it slides
            (CoTTA's protocol), set on the variant's model (None: the benchmarked config's).
        views_from_original: the stream config's views are made from the loaded image.
    """

    name: str
    method: dict
    plugins: list[dict] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    base: str | None = None
    stream_config: str | None = None
    model_test_cfg: dict | None = None
    views_from_original: bool = False


def stag_form(options: Mapping) -> str:
    """The name of the STAG form that hook ``options`` run (defaults: STAG_DEFAULTS)."""
    full = {**STAG_DEFAULTS, **{k: v for k, v in options.items() if k != 'type'}}
    return 'classifier' if full['grad_space'] == 'classifier' else f"feature, {full['impl']}"


def stag_name(form: str, method: str = BASELINE) -> str:
    return f'{method} + STAG ({form})'


def speed_name(option: str) -> str:
    return f'{BASELINE} [{option}]'


def hook_default_variant(method: str = BASELINE) -> str:
    """The variant that STAGHook's defaults run on ``method``."""
    return stag_name(stag_form({}), method)


def registered_methods() -> list[str]:
    """Every method in ``TTA_METHODS``: 'source' first, then TENT, then the rest by name."""
    names = sorted(TTA_METHODS.module_dict)
    first = [n for n in ('source', BASELINE) if n in names]
    return first + [n for n in names if n not in first]


def unconfigured_methods(config: str,
                         method_configs: Mapping[str, str] | None = None) -> list[str]:
    """The registered methods without a stream config for ``config`` (not timed by default:
    e.g. a method registered by a test)."""
    return [m for m in registered_methods()
            if find_stream_config(config, m, method_configs) is None]


def choose_methods(methods: Sequence[str] | None, skip: Sequence[str] = ()) -> list[str]:
    """``methods`` (default: every registered one but ``skip``) with TENT, the baseline,
    always in; an unknown name is a ValueError listing the registered ones."""
    registered = registered_methods()
    if BASELINE not in registered:
        raise ValueError(f'the baseline method {BASELINE!r} is not registered in TTA_METHODS')
    chosen = ([m for m in registered if m not in skip] if methods is None
              else list(dict.fromkeys(methods)))
    unknown = [m for m in chosen if m not in registered]
    if unknown:
        raise ValueError(f'--methods: unknown method(s) {unknown}; registered: {registered}')
    if BASELINE not in chosen:
        chosen.insert(1 if 'source' in chosen else 0, BASELINE)
    return chosen


def _method_variant(name: str, spec: MethodSpec, **kwargs) -> Variant:
    return Variant(name, dict(spec.method), stream_config=spec.config,
                   model_test_cfg=spec.model_test_cfg,
                   views_from_original=spec.views_from_original, **kwargs)


def build_variants(config: str, methods: Sequence[str] | None = None,
                   speed: Sequence[str] = (),
                   method_configs: Mapping[str, str] | None = None,
                   stag_methods: Sequence[str] | None = None) -> list[Variant]:
    """The variant list for the benchmarked ``config``:

    1. each of ``methods`` (default: every registered method that has a stream config; TENT
       is always in), with the options of its stream config
       (:mod:`~stag_seg.benchmark.method_configs`; ``method_configs`` maps a name, e.g.
       'cotta' or 'eata-stag', to a config to use; a named method without one is an error);
    2. TENT + each of STAG's forms (:data:`STAG_FORMS`);
    3. each other method + STAG, for the methods with a ``<name>-stag`` stream config (its
       method and STAGHook entries; shipped: eata, sar, cotta, with STAG's defaults) that
       are in ``stag_methods`` (None: all of them);
    4. TENT with each ``speed`` option (keys of :data:`SPEED_VARIANTS`).

    Unknown names are a ValueError listing the valid ones.
    """
    chosen = choose_methods(methods, unconfigured_methods(config, method_configs))
    bad_speed = [s for s in speed if s not in SPEED_VARIANTS]
    if bad_speed:
        raise ValueError(f'--speed: unknown option(s) {bad_speed}; valid: '
                         f'{list(SPEED_VARIANTS)}')
    specs = {m: method_spec(config, m, method_configs) for m in chosen}
    variants = [_method_variant(m, specs[m]) for m in chosen]
    tent = specs[BASELINE]
    variants += [_method_variant(stag_name(form), tent, base=BASELINE,
                                 plugins=[dict(type='STAGHook', **options)])
                 for form, options in STAG_FORMS.items()]
    for method in chosen:
        if method == BASELINE or (stag_methods is not None and method not in stag_methods):
            continue
        spec = stag_spec(config, method, method_configs)
        if spec is None:
            continue
        form = stag_form(spec.stag_hooks[0])
        variants.append(_method_variant(stag_name(form, method), spec, base=method,
                                        plugins=spec.stag_hooks))
    variants += [_method_variant(speed_name(s), tent, options=dict(SPEED_VARIANTS[s]))
                 for s in dict.fromkeys(speed)]
    return variants

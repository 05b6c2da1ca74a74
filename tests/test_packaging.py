"""Packaging: setup.py's declared requirements, the documented installs, the missing-mmcv error,
and a real wheel (commands, shipped configs, the demo) installed outside the clone.

The install tests run pip for real, offline: a fresh venv, and stub wheels (a package folder plus
``METADATA``/``WHEEL``/``RECORD``) for stag-seg - whose metadata comes from ``setup.py egg_info`` -
and for every requirement it declares, so that pip resolves exactly what setup.py says.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
MMCV_DISTS = {'mmcv', 'mmcv-lite', 'mmcv-full'}
# Stub versions offered to pip: current releases, plus older ones pip would fall back to if
# setup.py excluded the current ones (numpy 1.x, an older torch).
STUB_VERSIONS = {
    'torch': ['2.13.0', '2.15.0'],
    'numpy': ['1.26.4', '2.4.6'],
    'mmengine': ['0.10.7'],
    'mmsegmentation': ['1.2.2'],
    'mmcv-lite': ['2.1.0'],
    'mmcv': ['2.1.0'],
    'opencv-python': ['4.11.0.86'],
    'ftfy': ['6.3.1'],
    'regex': ['2024.11.6'],
    'matplotlib': ['3.10.0'],
    'rich': ['13.9.4'],
}


# --------------------------------------------------------------------------- setup.py metadata
def _parse_requires_txt(text: str) -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    """Split egg-info ``requires.txt`` into (install_requires, extras_require)."""
    base: list[Requirement] = []
    extras: dict[str, list[Requirement]] = {}
    section: list[Requirement] = base
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        if line.startswith('['):
            extra, _, marker = line[1:-1].partition(':')
            assert extra and not marker, f'unexpected requires.txt section {line}'
            section = extras.setdefault(extra, [])
        else:
            section.append(Requirement(line))
    return base, extras


@pytest.fixture(scope='module')
def declared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """setup.py's metadata as setuptools writes it: name, version, requires, extras."""
    egg_base = tmp_path_factory.mktemp('egg')
    done = subprocess.run([sys.executable, 'setup.py', '-q', 'egg_info', '--egg-base',
                           str(egg_base)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, f'setup.py egg_info failed:\n{done.stderr}'
    (info,) = egg_base.glob('*.egg-info')
    pkg_info = (info / 'PKG-INFO').read_text()
    base, extras = _parse_requires_txt((info / 'requires.txt').read_text())
    return {'name': re.search(r'^Name: (.+)$', pkg_info, re.M).group(1),
            'version': re.search(r'^Version: (.+)$', pkg_info, re.M).group(1),
            'requires': base, 'extras': extras}


def _by_name(reqs: list[Requirement]) -> dict[str, SpecifierSet]:
    return {canonicalize_name(r.name): r.specifier for r in reqs}


def test_install_requires_allow_numpy2_and_current_torch_without_mmcv(declared: dict) -> None:
    base = _by_name(declared['requires'])
    assert not MMCV_DISTS & set(base), 'an unconditional mmcv(-lite) overwrites a full mmcv'
    assert {'2.0.0', '2.4.6'} <= set(base['numpy'].filter(['1.26.4', '2.0.0', '2.4.6']))
    # torch.nn.utils.get_total_norm (engine) is new in torch 2.6; 2.15 is the current release.
    assert list(base['torch'].filter(['2.5.1', '2.6.0', '2.13.0', '2.15.0', '2.15.1'])) == [
        '2.6.0', '2.13.0', '2.15.0', '2.15.1']
    # Wheels built against numpy 2 (older ones fail to import under numpy 2).
    assert not base['opencv-python'].contains('4.10.0.83')
    assert not base['matplotlib'].contains('3.8.3')


def test_extras_match_compat_and_env_script(declared: dict) -> None:
    from stag_seg.compat import MMCV_RANGE

    extras = {name: _by_name(reqs) for name, reqs in declared['extras'].items()}
    assert extras['lite'] == {'mmcv-lite': SpecifierSet(MMCV_RANGE)}
    assert SpecifierSet(MMCV_RANGE).contains('2.1.0')
    assert not SpecifierSet(MMCV_RANGE).contains('2.2.0')
    assert extras['sweep']['ray'].contains('2.9.0') and not extras['sweep']['ray'].contains('3.0')
    assert {'pytest', 'pytest-xdist', 'ruff'} <= set(extras['dev'])   # tests/test_suite.py
    env_extras = re.findall(r'-e "\$root\[([a-z,]+)\]"', (REPO / 'scripts/env.sh').read_text())
    assert env_extras == ['lite,dev,sweep']  # pip only warns about an undeclared extra


# --------------------------------------------------------------------------- stub wheels
def _write_wheel(dest: Path, name: str, version: str, files: dict[str, str],
                 requires: tuple[str, ...] = (), provides_extra: tuple[str, ...] = ()) -> Path:
    """Write a minimal pure-Python wheel ``dest/<name>-<version>-py3-none-any.whl``."""
    stem = f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}"
    meta = ['Metadata-Version: 2.1', f'Name: {name}', f'Version: {version}']
    meta += [f'Provides-Extra: {e}' for e in provides_extra]
    meta += [f'Requires-Dist: {r}' for r in requires]
    files = {**files, f'{stem}.dist-info/METADATA': '\n'.join(meta) + '\n',
             f'{stem}.dist-info/WHEEL': 'Wheel-Version: 1.0\nGenerator: stag-seg-tests\n'
                                        'Root-Is-Purelib: true\nTag: py3-none-any\n'}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=')
        record.append(f'{path},sha256={digest.decode()},{len(text.encode())}')
    record.append(f'{stem}.dist-info/RECORD,,')
    wheel = dest / f'{stem}-py3-none-any.whl'
    with zipfile.ZipFile(wheel, 'w') as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f'{stem}.dist-info/RECORD', '\n'.join(record) + '\n')
    return wheel


def _stub_files(name: str, version: str) -> dict[str, str]:
    if name == 'mmcv':  # full mmcv: has compiled ops
        return {'mmcv/__init__.py': f"__version__ = '{version}'  # full\n",
                'mmcv/_ext.py': '# compiled ops\n'}
    if name == 'mmcv-lite':  # same import package, no ops
        return {'mmcv/__init__.py': f"__version__ = '{version}'  # lite\n"}
    module = re.sub(r'[-.]+', '_', name)
    return {f'{module}/__init__.py': f"__version__ = '{version}'\n"}


@pytest.fixture(scope='module')
def stub_index(declared: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --find-links folder: stag-seg (setup.py's metadata) and a stub for each requirement."""
    index = tmp_path_factory.mktemp('wheels')
    needed = declared['requires'] + declared['extras'].get('lite', [])
    for req in needed:
        offered = STUB_VERSIONS.get(canonicalize_name(req.name), [])
        assert list(req.specifier.filter(offered)), \
            f'add a stub version of {req.name} that satisfies {req} to STUB_VERSIONS'
    for name, versions in STUB_VERSIONS.items():
        for version in versions:
            _write_wheel(index, name, version, _stub_files(name, version))
    requires = [str(r) for r in declared['requires']]
    for extra, reqs in declared['extras'].items():
        requires += [f'{r}; extra == "{extra}"' for r in reqs]
    _write_wheel(index, declared['name'], declared['version'], {'stag_seg/__init__.py': ''},
                 tuple(requires), tuple(declared['extras']))
    return index


class StubVenv:
    """A fresh venv whose pip sees only the stub wheels (no index, no pip config)."""

    def __init__(self, root: Path, index: Path) -> None:
        subprocess.run([sys.executable, '-m', 'venv', str(root)], check=True, capture_output=True)
        self.python = str(root / 'bin' / 'python')
        self.index = index
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(('PIP_', 'PYTHON', 'VIRTUAL_ENV'))}
        self.env['PIP_CONFIG_FILE'] = os.devnull
        self.site = Path(self._py('import sysconfig; print(sysconfig.get_path("purelib"))'))

    def _py(self, code: str) -> str:
        return subprocess.run([self.python, '-c', code], env=self.env, check=True,
                              capture_output=True, text=True).stdout.strip()

    def pip(self, *args: str) -> str:
        cmd = [self.python, '-m', 'pip', *args]
        if args[0] == 'install':
            cmd += ['--no-index', '--find-links', str(self.index), '--no-cache-dir', '--no-compile']
        done = subprocess.run(cmd + ['--disable-pip-version-check'], env=self.env,
                              capture_output=True, text=True)
        assert done.returncode == 0, f'{" ".join(args)} failed:\n{done.stdout}\n{done.stderr}'
        return done.stdout

    def versions(self) -> dict[str, str]:
        code = ('import importlib.metadata as m, json; print(json.dumps('
                '{d.metadata["Name"].lower(): d.version for d in m.distributions()}))')
        return json.loads(self._py(code))

    def package_files(self, package: str) -> dict[str, bytes]:
        root = self.site / package
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob('*') if p.is_file()}


def test_plain_install_keeps_numpy2_torch_and_full_mmcv(declared: dict, stub_index: Path,
                                                        tmp_path: Path) -> None:
    """README: users with full mmcv 2.x run ``pip install -e .`` (here: the same metadata)."""
    venv = StubVenv(tmp_path / 'venv', stub_index)
    venv.pip('install', 'numpy==2.4.6', 'torch==2.15.0', 'mmcv==2.1.0')
    mmcv_files = venv.package_files('mmcv')
    assert set(mmcv_files) == {'__init__.py', '_ext.py'}

    venv.pip('install', 'stag-seg')

    got = venv.versions()
    assert got['stag-seg'] == declared['version']
    assert (got['numpy'], got['torch'], got['mmcv']) == ('2.4.6', '2.15.0', '2.1.0')
    assert 'mmcv-lite' not in got
    assert venv.package_files('mmcv') == mmcv_files  # not overwritten by mmcv-lite
    assert 'No broken requirements' in venv.pip('check')


def test_lite_install_adds_mmcv_lite_and_keeps_numpy2(declared: dict, stub_index: Path,
                                                      tmp_path: Path) -> None:
    """README/scripts/env.sh: torch first, then ``pip install -e '.[lite]'``."""
    venv = StubVenv(tmp_path / 'venv', stub_index)
    venv.pip('install', 'numpy==2.4.6', 'torch==2.13.0')

    venv.pip('install', 'stag-seg[lite]')

    got = venv.versions()
    assert got['stag-seg'] == declared['version']
    assert (got['numpy'], got['torch'], got['mmcv-lite']) == ('2.4.6', '2.13.0', '2.1.0')
    assert 'mmcv' not in got
    assert '# lite' in venv.package_files('mmcv')['__init__.py'].decode()
    assert 'No broken requirements' in venv.pip('check')


# --------------------------------------------------------------------------- missing mmcv
def _import_stag_seg(prelude: str) -> subprocess.CompletedProcess:
    """``import stag_seg`` (this checkout's) in a fresh interpreter after ``prelude``."""
    return subprocess.run([sys.executable, '-c', f'{prelude}\nimport stag_seg'], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def _assert_one_clear_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0
    assert done.stderr.count('Traceback') == 1, done.stderr  # no chained errors
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith('ModuleNotFoundError: stag-seg needs mmcv 2.x'), done.stderr
    assert "pip install 'stag-seg[lite]'" in last and 'full mmcv>=2.0.0rc4,<2.2.0' in last
    return last


def test_import_without_mmcv_says_how_to_install_it() -> None:
    # A None entry in sys.modules is how Python marks a module as absent.
    last = _import_stag_seg("import sys; sys.modules['mmcv'] = None")
    assert 'no mmcv is installed' in _assert_one_clear_error(last)


def test_import_with_leftover_mmcv_folder_names_it(tmp_path: Path) -> None:
    """An ``mmcv/`` folder without ``__init__.py``, as uninstalling mmcv-lite over mmcv leaves."""
    (tmp_path / 'mmcv' / 'ops').mkdir(parents=True)
    prelude = ('import importlib.machinery, sys\n'
               'class Leftover:  # finds mmcv only in the leftover folder\n'
               '    @staticmethod\n'
               '    def find_spec(name, path=None, target=None):\n'
               "        if name == 'mmcv':\n"
               '            return importlib.machinery.PathFinder.find_spec(\n'
               f'                name, [{str(tmp_path)!r}])\n'
               'sys.meta_path.insert(0, Leftover)')
    last = _assert_one_clear_error(_import_stag_seg(prelude))
    assert f'{tmp_path / "mmcv"} holds no mmcv install' in last


# --------------------------------------------------------------------------- the real wheel
#: what setup.py's build reads from the clone (tests, docs and tools stay out of a wheel)
WHEEL_SOURCES = ('setup.py', 'MANIFEST.in', 'README.md', 'pyproject.toml', 'stag_seg', 'configs',
                 'checkpoints/segformer_mini_minicity.pth')


class WheelVenv:
    """A fresh venv outside the clone with stag-seg installed from a wheel built here.

    The wheel goes in with ``--no-deps``; its requirements come from this interpreter's
    site-packages through a ``.pth`` line (a path, so the editable install's finder there is
    not run and the clone cannot shadow the wheel). Commands run in ``cwd`` with no
    PYTHONPATH and the user cache in ``cache``.
    """

    def __init__(self, tmp: Path) -> None:
        src, dist = tmp / 'src', tmp / 'dist'
        for rel in WHEEL_SOURCES:
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            if (REPO / rel).is_dir():
                shutil.copytree(REPO / rel, src / rel,
                                ignore=shutil.ignore_patterns('__pycache__', '.mim'))
            else:
                shutil.copy2(REPO / rel, src / rel)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(('PIP_', 'PYTHON', 'VIRTUAL_ENV', 'STAG_SEG'))}
        self.env.update(PIP_CONFIG_FILE=os.devnull, XDG_CACHE_HOME=str(tmp / 'cache'),
                        MPLBACKEND='Agg')
        self._run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                   '--no-index', '-q', '-w', str(dist), str(src)], cwd=tmp)
        (self.wheel,) = dist.glob('stag_seg-*.whl')
        root = tmp / 'venv'
        self._run([sys.executable, '-m', 'venv', str(root)], cwd=tmp)
        self.python, self.bin = str(root / 'bin' / 'python'), root / 'bin'
        site = Path(self.py('import sysconfig; print(sysconfig.get_path("purelib"))', tmp))
        deps = {sysconfig.get_path('purelib'), sysconfig.get_path('platlib')}
        (site / 'stag_seg_test_deps.pth').write_text('\n'.join(sorted(deps)) + '\n')
        self._run([self.python, '-m', 'pip', 'install', '--no-deps', '--no-index', '-q',
                   '--disable-pip-version-check', str(self.wheel)], cwd=tmp)
        self.site = site
        self.cwd = tmp / 'elsewhere'
        self.cwd.mkdir()

    def _run(self, cmd: list[str], cwd: Path, timeout: int = 600) -> str:
        done = subprocess.run(cmd, cwd=cwd, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f'{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}'
        return done.stdout

    def py(self, code: str, cwd: Path | None = None) -> str:
        return self._run([self.python, '-c', code], cwd or self.cwd).strip()

    def command(self, name: str, *args: str) -> str:
        return self._run([str(self.bin / name), *args], self.cwd)


@pytest.fixture(scope='module')
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> WheelVenv:
    return WheelVenv(tmp_path_factory.mktemp('wheel'))


def test_wheel_ships_commands_configs_and_demo_checkpoint(wheel_venv: WheelVenv) -> None:
    with zipfile.ZipFile(wheel_venv.wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(next(n for n in names if n.endswith('entry_points.txt'))).decode()
    configs = {str(p.relative_to(REPO)) for p in (REPO / 'configs').rglob('*') if p.is_file()}
    assert {f'stag_seg/.mim/{c}' for c in configs} <= names
    assert 'stag_seg/.mim/checkpoints/segformer_mini_minicity.pth' in names
    assert not any(n.startswith(('tests/', 'tools/', 'configs/')) for n in names)
    setup_py = (REPO / 'setup.py').read_text()
    commands = dict(re.findall(r"^    '(stag-[a-z-]+)': '(\w+)',$", setup_py, re.M))
    # commands and tools, less their shared helpers (_options.py, tools/_common.py) and __init__
    modules = {p.stem for p in (REPO / 'stag_seg' / 'commands').glob('*.py')
               if not p.stem.startswith('_')}
    tools = {p.stem for p in (REPO / 'tools').glob('*.py') if not p.stem.startswith('_')}
    assert set(commands.values()) == modules == tools
    for name, module in commands.items():
        assert f'{name} = stag_seg.commands.{module}:main' in entry_points
        assert (wheel_venv.bin / name).is_file()
        wrapper = (REPO / 'tools' / f'{module}.py').read_text()
        assert f'from stag_seg.commands.{module} import main' in wrapper
        assert 'import _common' in wrapper          # the environment guard, first
        assert wrapper.index('import _common') < wrapper.index('from stag_seg')
    # the wheel's package, not the clone's
    where = wheel_venv.py('import stag_seg, stag_seg.resources as r; '
                          'print(stag_seg.__file__, r.in_clone(), r.configs_dir())')
    package, in_clone, configs_dir = where.split()
    assert package == str(wheel_venv.site / 'stag_seg' / '__init__.py')
    assert in_clone == 'False' and configs_dir == str(wheel_venv.site / 'stag_seg/.mim/configs')


def test_wheel_commands_help_demo_and_packaged_config(wheel_venv: WheelVenv) -> None:
    for name in ('stag-tta', 'stag-demo', 'stag-sweep'):
        text = wheel_venv.command(name, '--help')
        assert text.startswith(f'usage: {name} ')
    assert 'stag_seg::' in wheel_venv.command('stag-tta', '--help')

    # the demo's data is rendered in (then found in) the user cache, its checkpoint shipped
    cache = Path(wheel_venv.env['XDG_CACHE_HOME']) / 'stag-seg' / 'demo'
    wheel_venv.command('stag-make-demo-data', '--root', str(cache), '--num-per-condition', '4')
    out = wheel_venv.command('stag-demo', '--rounds', '1', '--images', '4')
    assert f'data ready in {cache}: 4 of the 4 images' in out
    work = wheel_venv.cwd / 'work_dirs' / 'demo'
    for method in ('source', 'tent', 'tent_stag'):
        records = [json.loads(line)
                   for line in (work / method / 'results.jsonl').read_text().splitlines()]
        assert [r['num_images'] for r in records] == [4, 4, 4, 4, 50]
    assert (work / 'qualitative.png').is_file() and (work / 'compare_miou.png').is_file()

    # a stream from the packaged config, by its stag_seg:: name, from another directory
    checkpoint = wheel_venv.site / 'stag_seg/.mim/checkpoints/segformer_mini_minicity.pth'
    wheel_venv.command(
        'stag-tta', 'stag_seg::demo/segformer_mini_demo-acdc_tent-stag.py', str(checkpoint),
        '--work-dir', 'run', '--cfg-options', f'test_dataloader.dataset.data_root={cache}/acdc',
        'test_cfg.num_rounds=1', 'test_cfg.forgetting=None', 'test_cfg.subset=2',
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False')
    records = [json.loads(line)
               for line in (wheel_venv.cwd / 'run' / 'results.jsonl').read_text().splitlines()]
    assert [(r['domain'], r['num_images'], r['method']) for r in records] == [
        (d, 2, 'tent+stag') for d in ('fog', 'night', 'rain', 'snow')]
    assert list((wheel_venv.cwd / 'run').glob('*/vis_data/scalars.json'))

import subprocess
import sys


def test_the_engine_imports_without_django():
    code = "import sys, icon2engine, icon2engine.cli; print('django' in sys.modules, 'webapp' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


def test_icon2_help_does_not_import_torch():
    """The package's names load on first use (PEP 562): the help of the CLI and of a command,
    and the torch-free modules the web app shares, never pull in torch. (The flags come from
    transformers' HfArgumentParser, which loads without torch.)"""
    code = (
        "import sys, contextlib, io\n"
        "from icon2engine.cli import main\n"
        "for argv in (['--help'], ['generate', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        try: main(argv)\n"
        "        except SystemExit: pass\n"
        "    assert 'usage' in out.getvalue(), out.getvalue()\n"
        "from icon2engine import Icon2Error, StageStats\n"
        "import icon2engine.config, icon2engine.stages, icon2engine.judges\n"
        "print('torch' in sys.modules, 'transformers.modeling_utils' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


def test_every_exported_name_resolves():
    import icon2engine

    assert set(icon2engine.__all__) == set(icon2engine._EXPORTS)
    assert all(getattr(icon2engine, name) is not None for name in icon2engine.__all__)

import subprocess
import sys


def test_the_engine_imports_without_django():
    code = "import sys, icon2engine, icon2engine.cli; print('django' in sys.modules, 'webapp' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]

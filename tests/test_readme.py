"""The README states only what was measured: its run times come from the committed runs."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_run_times_are_generated_from_the_committed_measurements():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "measured.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_no_untimed_promise_of_speed():
    """A promise such as 'under a minute' only inside the generated block, which the data back."""
    for path in (ROOT / "README.md", ROOT / "book" / "how_to_run.md"):
        text = path.read_text()
        head, _, rest = text.partition("<!-- measured -->")
        outside = head + rest.partition("<!-- /measured -->")[2]
        for phrase in ("under a minute", "within about a minute", "in about a minute"):
            assert phrase not in outside, f"{path.name} promises '{phrase}' without a measurement"

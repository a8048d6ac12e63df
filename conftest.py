"""Report how long each notebook took under nbval (the budgets are per notebook, on 2 CPU cores)."""
from collections import defaultdict

_times = defaultdict(float)


def pytest_runtest_logreport(report):
    if report.nodeid.endswith(".ipynb") or ".ipynb::" in report.nodeid:
        _times[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if _times:
        terminalreporter.section("notebook run times (nbval, all cells)")
        for name, seconds in sorted(_times.items()):
            terminalreporter.write_line(f"{seconds:7.1f} s  {name}")

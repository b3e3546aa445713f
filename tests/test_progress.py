"""Progress off a terminal: periodic plain lines (no carriage returns), a final line, silence when disabled."""

from flowforge.progress import ProgressLines, progress_bar


def test_off_a_terminal_progress_is_plain_periodic_lines(capsys, monkeypatch):
    monkeypatch.setenv("FLOWFORGE_PROGRESS_SECONDS", "0")
    bar = progress_bar(total=3, desc="train", unit="step")
    assert isinstance(bar, ProgressLines)  # pytest's stderr is not a terminal
    bar.update(1)
    bar.set_postfix({"bpd": "3.210"})
    bar.update(2)
    bar.close()
    bar.close()  # a second close prints nothing more
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 3 and lines[0].startswith("train: 1/3 step [")
    assert lines[1].startswith("train: 3/3 step [") and "bpd=3.210" in lines[1]


def test_lines_wait_for_the_interval_and_end_with_a_final_line(capsys):
    total = sum(progress_bar(range(50), desc="eval"))
    assert total == sum(range(50))
    lines = capsys.readouterr().err.splitlines()
    assert lines == [lines[0]] and lines[0].startswith("eval: 50/50 it [")  # 30 s interval: only the last


def test_disabled_progress_prints_nothing(capsys):
    for _ in progress_bar(range(5), desc="quiet", disable=True):
        pass
    with progress_bar(total=2, disable=True) as bar:
        bar.update(2)
    assert capsys.readouterr().err == ""

"""citynode.progress.Progress as `citynode simulate` draws it: one unplanned part, the label as it is, the time."""
import io
import re

from citynode.progress import Progress


def test_an_unplanned_bar_with_a_timer_and_the_whole_label():
    out = io.StringIO()
    bar = Progress("simulating 100 nodes x 30 days", stream=out, enabled=True, width=10, label_width=None, fill="-",
                   timer=True)
    bar.set(0.25)
    bar.set(0.1)  # never goes back
    bar.set(1.0)
    bar.finish()
    frames = out.getvalue().split("\r")[1:]
    assert re.fullmatch(r"simulating 100 nodes x 30 days \[##--------\]  25\.0% +\d+\.\ds ", frames[0])
    assert re.fullmatch(r"simulating 100 nodes x 30 days \[##########\] 100\.0% +\d+\.\ds \n", frames[-1])


def test_a_bar_on_a_pipe_writes_nothing():
    out = io.StringIO()
    bar = Progress("simulating", stream=out, label_width=None, timer=True)
    bar.set(1.0)
    bar.finish()
    assert out.getvalue() == ""

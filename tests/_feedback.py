"""Assertions on a checker's Feedback, shared by the tests of attnlab.exercises."""


def wrong(feedback, *words):
    """A tried but wrong answer whose message names each of ``words``."""
    assert not feedback.ok and feedback.done and feedback.startswith("Not yet."), feedback
    for word in words:
        assert word in feedback, (word, str(feedback))
    return True


def not_done(feedback):
    """An answer still left as ``...`` or a stub that still raises NotImplementedError."""
    assert not feedback.ok and not feedback.done and feedback.startswith("Not done yet."), feedback
    return True

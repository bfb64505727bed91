"""Ctrl-C detection: in an exception's chain, and SIGINTs seen while a watch is on."""

import signal

import pytest

from quantlens.eval.interrupts import InterruptWatch, interrupted_by, raise_if_interrupted


def test_interrupted_by_walks_cause_and_context():
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ValueError("inner") from None  # __cause__ None, __context__ still the interrupt
    except ValueError as exc:
        wrapped = exc
    assert interrupted_by(wrapped)
    outer = RuntimeError("outer")
    outer.__cause__ = wrapped
    assert interrupted_by(outer)
    assert not interrupted_by(RuntimeError("plain"))
    loop = RuntimeError("loop")
    loop.__context__ = loop
    assert not interrupted_by(loop)


def test_raise_if_interrupted_turns_a_wrapped_ctrl_c_back_into_one():
    wrapped = RuntimeError("import of torch._dynamo failed")
    wrapped.__cause__ = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt) as info:
        raise_if_interrupted(wrapped)
    assert info.value.__cause__ is wrapped
    raise_if_interrupted(RuntimeError("plain"))  # not an interrupt: returns, the caller handles it


def test_the_watch_sees_a_swallowed_sigint_and_restores_the_handler():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with InterruptWatch() as watch:
            assert signal.getsignal(signal.SIGINT) != signal.default_int_handler
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:  # Python's behaviour is kept: the interrupt is raised
                swallowed = True
        assert swallowed and watch.requested
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with InterruptWatch() as quiet:
            pass
        assert not quiet.requested
    finally:
        signal.signal(signal.SIGINT, previous)

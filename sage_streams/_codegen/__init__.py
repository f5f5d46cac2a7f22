"""Code generation: the only package that calls ``compile`` or ``exec``.

It turns descriptions (a chain's steps, a join's probe, a window's loops) into Python code
specialised for them, and imports nothing above the package's lowest layer (``errors``,
``_typing``, ``functions``, ``time``). Each generated function has a plain, interpreted twin
(:mod:`sage_streams._codegen.plain`) under the same contract, chosen with ``codegen=False``.
What it offers:

- :func:`compile_chain`: a chain of stateless steps as one loop (:class:`StepChain`);
- :func:`compile_probe`: a join's probe of the other side's buffer;
- :func:`run_loop`, :func:`key_reader`, :func:`each`: the loops of a window operator;
- :func:`inlinable` and :func:`tracing`: whether a user function's source may be pasted, and
  whether a tracer is watching (pasted code would hide calls from it).
"""

from sage_streams._codegen.chain import compile_chain
from sage_streams._codegen.inline import Inline, inlinable, tracing
from sage_streams._codegen.join_probe import compile_probe
from sage_streams._codegen.lookups import Probe, lookup_error, none_key
from sage_streams._codegen.steps import Failure, Lookup, Step, StepChain, StepKind
from sage_streams._codegen.window_loops import KeyReader, RunLoop, each, key_reader, run_loop

__all__ = [
    "Failure",
    "Inline",
    "KeyReader",
    "Lookup",
    "Probe",
    "RunLoop",
    "Step",
    "StepChain",
    "StepKind",
    "compile_chain",
    "compile_probe",
    "each",
    "inlinable",
    "key_reader",
    "lookup_error",
    "none_key",
    "run_loop",
    "tracing",
]

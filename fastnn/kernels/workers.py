"""Compiled workers that the parallel drivers call by address, so each is compiled once.

When one Numba kernel calls another, the callee's code is linked into the caller's
and optimised again there.  A ``prange`` loop body becomes three libraries of its
own (the loop body and two wrappers) before the driver links them, so whatever the
body calls was optimised and turned into machine code about five times, in every
specialisation of every driver.  The per-chunk and per-task workers of the epoch
driver (``epoch.forward_backward_chunks``, ``epoch.update_task``) and of the L-BFGS
objective (``epoch.task_gradient``) are the bulk of that code.

So the drivers do not call them; they take a ``Worker`` argument: the address of a
worker compiled (or loaded from the cache) on its own, for the argument types of
the run at hand, and call it through that address (``call_worker``), with Numba's
own calling convention.  The Numba type of a ``Worker`` carries the worker's name,
argument types and return type.  So a driver is compiled, and cached, for those
exactly, and a call whose argument types differ from the worker's is a typing error
when the driver compiles, never a call with the wrong layout at run time.

A Worker may also bind its last arguments to values (``bound``): they are compiled
as constants (``numba.types.Omitted``: no run-time value; an int is typed as a
literal, and Numba prunes the branches they decide), the drivers' calls leave them
out, and they are not part of the Worker's Numba type.  So one compiled driver
serves workers that differ only in them: the chunk worker is bound to the
activations a network has and the update worker to the optimizer's code, and the
epoch driver is compiled once for all of them.

A Worker made with ``aside=True`` is compiled by a forked child process into
Numba's disk cache (``compilation.compile_aside``) while this process compiles the
rest; its address is ready once the child is done (asking for it waits), and so is
its type, unless the return type was declared: then a driver can be compiled for the
Worker meanwhile, and the declaration is checked when the code is loaded, before
any call.

Every worker runs with subnormal numbers flushed to zero (``call_worker``): on x86,
the call sets the FTZ and DAZ bits of the thread's MXCSR and restores the register
after, so the caller's thread (Python's, NumPy's) keeps IEEE arithmetic.  Training
from the tutorial's N(0, 1) weights on 784 inputs saturates the sigmoids, and the
products of the weight gradient then fall below float32's normal range, where each
multiply-add takes a microcode assist: the gradient took 2.4x the forward pass's time
(docs/benchmarks.md).  JAX flushes them on CPU as well.

Under NUMBA_DISABLE_JIT a ``Worker`` holds the Python function and ``call_worker``
calls it.
"""

import contextlib

import numba
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model, typeof_impl, unbox, NativeValue

from .. import config
from ..compilation import compile_aside


class Worker:
    """A compiled function's entry point for the given argument values' types.

    function is a Numba dispatcher (or, under NUMBA_DISABLE_JIT, a Python function);
    args are values of the types the driver will call it with (only their types are
    used; a ``numba.types.Literal`` type may stand for a value); bound, values of
    the function's last arguments, compiled as constants and left out of the calls
    and of the Worker's type (hashable: None, True, ints, tuples of them).  Compiles the
    function for them, or loads it from the cache, once: right away, or with aside
    (and the function not yet compiled for them in this process) in a child process
    first, when ``compilation.compile_aside`` starts one.  returns, the function's
    Numba return type if given, is checked against the compiled function's (a
    TypeError if they differ).  Holds the address of its code: valid in this process
    only, so a Worker cannot be pickled.
    """

    def __init__(self, function, args, aside=False, returns=None, bound=()):
        self.function, self.bound, self._waiting, self._type = function, tuple(bound), None, None
        if not isinstance(function, numba.core.dispatcher.Dispatcher):
            self._address = 0
            return
        self.call_types = tuple(arg if isinstance(arg, types.Type) else numba.typeof(arg)
                                for arg in args)
        self.argtypes = self.call_types + tuple(types.Omitted(value) for value in self.bound)
        if returns is not None:
            self._type = WorkerType(function.py_func.__qualname__, self.call_types, returns,
                                    len(self.bound))
        if aside and self.argtypes not in function.overloads:
            self._waiting = compile_aside(lambda: function.compile(self.argtypes))
        if self._waiting is None:
            self._compile()

    def _compile(self):
        self.function.compile(self.argtypes)
        result = self.function.overloads[self.argtypes]
        compiled = WorkerType(self.function.py_func.__qualname__, self.call_types,
                              result.signature.return_type, len(self.bound))
        if self._type is not None and self._type != compiled:
            raise TypeError(f"{compiled.function_name} returns {compiled.return_type}, not the "
                            f"declared {self._type.return_type}")
        self._address = result.library.get_pointer_to_function(result.fndesc.llvm_func_name)
        self._type = compiled

    def _ready(self):
        """Wait for a child compiling the function aside, then load it from the cache."""
        if self._waiting is not None:
            wait, self._waiting = self._waiting, None
            wait()
            self._compile()

    @property
    def address(self):
        """The address of the compiled code (0 under NUMBA_DISABLE_JIT)."""
        self._ready()
        return self._address

    @property
    def type(self):
        """The ``WorkerType`` (None under NUMBA_DISABLE_JIT): declared, or once compiled."""
        if self._type is None:
            self._ready()
        return self._type

    def __reduce__(self):
        raise TypeError("a Worker holds a code address of this process and cannot be pickled")


class WorkerType(types.Type):
    """Numba type of a ``Worker``: its function's name, the types of the arguments a
    call passes, its return type and how many bound arguments follow (not their values)."""

    def __init__(self, name, argtypes, return_type, n_bound=0):
        self.function_name, self.argtypes, self.return_type = name, argtypes, return_type
        self.n_bound = n_bound
        super().__init__(name=f"Worker({name}, {argtypes} + {n_bound} bound) -> {return_type}")

    @property
    def key(self):
        return self.function_name, self.argtypes, self.return_type, self.n_bound


@typeof_impl.register(Worker)
def _typeof_worker(worker, context):
    return worker.type


@register_model(WorkerType)
class _WorkerModel(models.PrimitiveModel):
    """A Worker is its code address, an int64, inside compiled code."""

    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, cgutils.intp_t)


@unbox(WorkerType)
def _unbox_worker(typ, obj, c):
    address = c.pyapi.object_getattr_string(obj, "address")
    native = c.unbox(types.intp, address)
    c.pyapi.decref(address)
    return NativeValue(native.value, is_error=native.is_error)


#: MXCSR's flush-to-zero (results) and denormals-are-zero (inputs) bits, on x86-64 only.
FLUSH_SUBNORMALS = 0x8040 if llvm.get_process_triple().startswith("x86_64") else 0


def _mxcsr(builder, name, slot):
    """Call llvm.x86.sse.<name> (stmxcsr or ldmxcsr) on the i32 at slot."""
    i8_ptr = ir.IntType(8).as_pointer()
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [i8_ptr]), f"llvm.x86.sse.{name}")
    builder.call(function, [builder.bitcast(slot, i8_ptr)])


def _flush_subnormals(builder):
    """Set MXCSR's FLUSH_SUBNORMALS bits; returns the slot holding its previous value
    (None where FLUSH_SUBNORMALS is 0: nothing is done)."""
    if not FLUSH_SUBNORMALS:
        return None
    saved, changed = (cgutils.alloca_once(builder, ir.IntType(32)) for _ in range(2))
    _mxcsr(builder, "stmxcsr", saved)
    builder.store(builder.or_(builder.load(saved), ir.Constant(ir.IntType(32), FLUSH_SUBNORMALS)),
                  changed)
    _mxcsr(builder, "ldmxcsr", changed)
    return saved


def _restore_subnormals(builder, saved):
    """Put back the MXCSR that ``_flush_subnormals`` saved."""
    if saved is not None:
        _mxcsr(builder, "ldmxcsr", saved)


@intrinsic
def _flush_subnormals_here(typingctx):
    """Set MXCSR's FLUSH_SUBNORMALS bits in the calling thread; returns its previous value."""
    def codegen(context, builder, signature, args):
        saved = _flush_subnormals(builder)
        if saved is None:
            return ir.Constant(ir.IntType(64), 0)
        return builder.zext(builder.load(saved), ir.IntType(64))
    return types.int64(), codegen


@intrinsic
def _restore_subnormals_here(typingctx, saved):
    """Put back the MXCSR value that ``_flush_subnormals_here`` returned."""
    def codegen(context, builder, signature, args):
        if FLUSH_SUBNORMALS:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(builder.trunc(args[0], ir.IntType(32)), slot)
            _restore_subnormals(builder, slot)
        return context.get_dummy_value()
    return types.void(types.int64), codegen


@numba.njit(**config.JIT_OPTIONS)
def _enter_flushing():
    return _flush_subnormals_here()


@numba.njit(**config.JIT_OPTIONS)
def _leave_flushing(saved):
    _restore_subnormals_here(saved)


@contextlib.contextmanager
def subnormals_flushed():
    """Run the block with this thread's arithmetic flushing subnormals to zero, as a
    worker's runs (``call_worker``), and restore it after: for kernels called from
    Python that stand for the workers' (``profiling.kernel_times``)."""
    if numba.config.DISABLE_JIT:
        yield
        return
    saved = _enter_flushing()
    try:
        yield
    finally:
        _leave_flushing(saved)


def _call_worker_typing(typingctx, worker, *args):
    """Numba's typing and code of ``call_worker``: a call through the worker's address."""
    if len(args) == 1 and isinstance(args[0], types.StarArgTuple):
        args = tuple(args[0])
    if not isinstance(worker, WorkerType) or tuple(args) != worker.argtypes:
        return None  # Numba reports the call as a typing error, with the types
    sig = worker.return_type(worker, types.StarArgTuple(args))

    def codegen(context, builder, signature, llargs):
        call_conv = context.call_conv
        # A bound argument's value is compiled into the worker, and an omitted argument
        # passes no LLVM argument whatever its value: each gets an empty placeholder.
        omitted = (types.Omitted(None),) * worker.n_bound
        argtypes = worker.argtypes + omitted
        function_type = call_conv.get_function_type(worker.return_type, argtypes)
        function = builder.inttoptr(llargs[0], function_type.as_pointer())
        values = cgutils.unpack_tuple(builder, llargs[1], len(worker.argtypes))
        values += [context.get_value_type(omitted_type)(None) for omitted_type in omitted]
        saved = _flush_subnormals(builder)
        status, result = call_conv.call_function(builder, function, worker.return_type,
                                                 argtypes, values)
        _restore_subnormals(builder, saved)
        with cgutils.if_unlikely(builder, status.is_error):
            call_conv.return_status_propagate(builder, status)
        return result

    return sig, codegen


if numba.config.DISABLE_JIT:
    def call_worker(worker, *args):
        """worker.function(*args, *worker.bound) (NUMBA_DISABLE_JIT: the drivers run as Python)."""
        return worker.function(*args, *worker.bound)
else:
    call_worker = intrinsic(_call_worker_typing)
    call_worker.__doc__ = ("worker(*args) in compiled code: a call through the worker's address, "
                           "with subnormals flushed to zero during it.")

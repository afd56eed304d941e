"""Register-tiled matrix product, the core of every dense-layer kernel.

``gemm(a, b, c, bias, init)`` computes ``c = start + a @ b``, where ``start`` is 0,
``c`` itself or ``bias`` broadcast over the rows; ``gemm_sgd`` takes that sum as a
gradient and applies a plain SGD step to weights with it, tile by tile, instead of
storing it.  It follows the BLIS plan, reduced to what a dense layer's shapes need:

* The microkernel holds an ``MR x NR`` tile of ``c`` in vector registers for the
  whole sum over k: each step loads ``NV`` vectors of one row of ``b`` and, for each
  of the ``MR`` rows, broadcasts one element of ``a`` and does ``NV`` fused
  multiply-adds.  Plain Numba code does not keep such a tile in registers (LLVM
  spills scalar locals and leaves small arrays in memory), so the microkernel is
  written as explicit vector LLVM IR (``<lanes x float>`` values and ``llvm.fma``)
  through a Numba ``@intrinsic``.
* Loop order: column panels of ``NR`` outside, row tiles inside, so one panel of b
  (k x NR: 784 x 48 float32 is 150 KB) stays in L2 while every row tile of a uses it.
  a is never packed: its elements are read one at a time, at any strides (so ``a``
  may be a transposed view).
* Packing b (AVX2 only, ``PACK_B``): when a has at least 32 rows and b at least 128,
  each panel of b is copied, ``PANEL_KC`` of its rows at a time, into a contiguous
  buffer on the stack (24 KB, in L1) before the row tiles run over it; the tiles then
  start from c for every block of k after the first.  Rows of b that are a power of
  two of bytes apart (2 or 4 KB for 512-wide layers) fall into the same L1 sets,
  which costs the 4-row AVX2 tile up to half its speed; contiguous panels do not.
  With fewer rows the copy costs more than it saves, and b is read in place as
  unaligned vectors.
* Edges: a tile with fewer than ``MR`` rows reads the last valid row of a again for
  the missing ones and does not store them; columns left of a multiple of NR go
  (after tiles of two vectors while two remain) through a one-vector microkernel
  (``MR_NARROW`` rows), whose last vector uses masked loads and stores, so a 10-wide
  output layer wastes at most one vector's lanes per row.

Compiled once per dtype.  The product itself is not compiled into its callers:
``gemm_entry`` is compiled, once per dtype, as a C-callable function (a Numba
``cfunc``, cached like every kernel), and ``gemm`` compiles to a call through a cell
that holds the entry's address, registered with LLVM under a symbol name
(``entry_symbol``).  An entry is made when the first caller of its dtype is compiled,
or, for callers loaded from the cache, by their first product: until then the cell
points at ``_first_call``, which makes the entry and stores its address (lazy
binding, as a dynamic linker's).  So a run compiles the entries of its own dtypes
only.  Numba otherwise links a callee's code into every caller and
optimises it again at each level up to the epoch driver (about seven times, in
every specialisation of the driver); with the external call, four configurations
compiled one after the other into one cache took 53.3 -> 44.5 s of CPU, while a
single cold run stayed within its noise (docs/performance.md).  The entry compiles
one body for the three start modes: ``init`` is a variable, tested once per tile
(a body per mode, as a literal, compiled three times the code for no measurable
speed: docs/engine.md).

The vector width comes from the CPU Numba compiles for (``NUMBA_CPU_NAME`` included):
512 bits when LLVM compiles a <16 x float> multiply-add to ``zmm`` registers
(AVX-512: 32 registers), else 256 bits (AVX2: 16 registers).  The tile shapes are a
rule on that width, not a timing taken at run time, so results are reproducible; the
measurements behind them are in docs/benchmarks.md.

Every sum over k runs in order 0..k-1 with one rounding per step (a fused
multiply-add), whatever the thread count.
"""

import ctypes
import functools
import os
import sys
import threading
import traceback

import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.extending import intrinsic

from .. import config

#: How gemm starts each tile of c: from zeros, from c's current values, from the bias.
ZERO, ACCUMULATE, BIAS = 0, 1, 2
#: Added to ZERO or ACCUMULATE (``gemm_sgd``): the finished tile is not stored in c but
#: taken as a gradient, w -= lr * tile, in the array passed as the bias.
SGD_STEP = 4

#: What a wide tile fetches into cache while it computes, one 64-byte line per step of k
#: (``fetch_ahead``): nothing, lines of b it will not read itself (the next panel), or
#: lines of the weight copy that it does not step itself, for writing (the next tile's).
NO_FETCH, FETCH_B, FETCH_W = 0, 1, 2
#: Bytes of a cache line (every x86-64 CPU's).
LINE_BYTES = 64


def _target_vector_bits():
    """512 if Numba's target CPU runs <16 x float> fma in zmm registers, else 256.

    Asks LLVM itself: compiles a one-line function for the CPU and features Numba
    uses (``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES``, or the host) and reads the
    assembly, so a CPU name LLVM knows needs no table here.
    """
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    cpu, features = numba.config.CPU_NAME, numba.config.CPU_FEATURES
    if cpu in (None, "host"):
        cpu = llvm.get_host_cpu_name()
        features = llvm.get_host_cpu_features().flatten() if features is None else features
    features = features or ""  # a named CPU without features: LLVM's own for that CPU
    target = llvm.Target.from_triple(llvm.get_process_triple())
    machine = target.create_target_machine(cpu=cpu, features=features, opt=2)
    module = llvm.parse_assembly(
        "declare <16 x float> @llvm.fma.v16f32(<16 x float>, <16 x float>, <16 x float>)\n"
        "define <16 x float> @f(<16 x float> %a, <16 x float> %b, <16 x float> %c) {\n"
        "  %r = call <16 x float> @llvm.fma.v16f32(<16 x float> %a, <16 x float> %b, "
        "<16 x float> %c)\n"
        "  ret <16 x float> %r\n}\n")
    return 512 if "zmm" in machine.emit_assembly(module) else 256


VECTOR_BITS = _target_vector_bits()
VECTOR_BYTES = VECTOR_BITS // 8


def numba_target():
    """dict(cpu, avx512, vector_bits): the CPU Numba compiles for, whether its code may
    use AVX-512 instructions, and the gemm tile's vector width, for benchmark records.

    Numba adds the host's features to a ``NUMBA_CPU_NAME`` unless ``NUMBA_CPU_FEATURES``
    is set: ``NUMBA_CPU_NAME=haswell`` alone on an AVX-512 host gives 256-bit tiles in
    AVX-512 code (avx512 True); AVX2-only code also needs ``NUMBA_CPU_FEATURES=``
    (empty: the named CPU's own features).
    """
    features = numba.config.CPU_FEATURES
    if features is None:
        features = llvm.get_host_cpu_features().flatten()
    return dict(cpu=numba.config.CPU_NAME or "host", avx512="+avx512f" in features.split(","),
                vector_bits=VECTOR_BITS)

#: Microkernel shapes: (rows, vectors of columns) for the wide and the narrow tile.
#: The accumulators (rows x vectors) plus the vectors of b loaded per step must fit
#: in the register file: 32 registers with AVX-512, 16 with AVX2.
MR, NV = (8, 3) if VECTOR_BITS == 512 else (4, 3)
MR_NARROW = 8

#: Columns past the wide panels go through an MR x 2-vector tile while two whole
#: vectors remain, then the narrow tile: per step of k it loads 2 vectors of b and
#: broadcasts MR elements of a for 2 MR multiply-adds, against 1 and 8 for 8.  The
#: delta propagation through W (``dense.delta_product``) is a product 16 columns
#: wide, the rows of a chunk: two vectors of float32 with 256 bits, of float64 with
#: 512, which ran 1.12-1.13x (AVX2 code, float32) and 1.05-1.13x (AVX-512, float64)
#: faster so on 128 x 128 and 512 x 512 weights.  In 512-bit float32 code, 512 or 128
#: columns leave 32 past the 48-wide panels: W2's epoch ran 5 % faster with the tile
#: on the Intel AVX-512 machine, where the Zen 4 had trained the tutorial's network
#: 1 % slower (docs/benchmarks.md).

#: Packing rule (measured in docs/benchmarks.md): with 256-bit vectors the wide
#: panels of b are packed when a has PACK_MIN_ROWS rows or more and b has
#: PACK_MIN_DEPTH rows or more (fewer stay in L1 whatever their stride: packing them
#: measured 8 % slower), into a stack buffer of PANEL_BYTES holding PANEL_KC rows of
#: NR columns (256 rows, either dtype).  The 512-bit tile uses each load of b 8 times
#: and reads it in place as fast (packing measured no faster on large products,
#: slower on 32-64 rows).
PACK_B = VECTOR_BITS == 256
PACK_MIN_ROWS = 32
PACK_MIN_DEPTH = 128
PANEL_BYTES = 24 * 1024
PANEL_KC = PANEL_BYTES // (NV * VECTOR_BYTES)


def panel_width(dtype):
    """Columns of a panel of b (NR): the wide tile's NV vectors of the dtype's elements.

    The panel layout of a (k, n) matrix B is an array P of shape (ceil(n / NR), k, NR),
    P[p, i, j] = B[i, p * NR + j], the last panel's columns past n unused: each panel
    is contiguous, so the tiles read it as a stream, whatever B's width (rows of 512
    float32 fall into the same few L1 sets and cost the 256-bit tile up to half its
    speed).  The training engine keeps copies of W and W.T in this layout
    (``epoch.weight_copies``).
    """
    return NV * (VECTOR_BYTES // np.dtype(dtype).itemsize)


@njit(inline="always", **config.JIT_OPTIONS)
def panel_columns(array):
    """``panel_width`` of an array's dtype, in compiled code (a compile-time constant)."""
    return NV * (VECTOR_BYTES // array.itemsize)


def _as_i64(context, builder, signature, args, index):
    """Argument ``index`` of an intrinsic converted to an LLVM i64."""
    return context.cast(builder, args[index], signature.args[index], types.int64)


def _data_pointer(context, builder, signature, args, index):
    """Pointer to the first element of the array passed as argument ``index``."""
    return context.make_array(signature.args[index])(context, builder, args[index]).data


def _vector_at(builder, ptr, index, vector_type):
    """ptr + index (in elements) as a pointer to a vector_type."""
    return builder.bitcast(builder.gep(ptr, [index]), vector_type.as_pointer())


#: Fast-math flags of the SGD step's product and difference: those of the update rules
#: (``config.UPDATE_JIT_OPTIONS``), without "contract", so that they are rounded apart
#: as in ``optimizers.sgd_step``.  Numba adds the kernel's own flags (with "contract")
#: only to float instructions that have none.
_SGD_FLAGS = tuple(sorted(config.UPDATE_JIT_OPTIONS["fastmath"]))


def _make_tile_kernel(rows, vectors, partial_columns, fetches=False):
    """An intrinsic computing one (<= rows) x (<= vectors * lanes) tile of c.

    Signature (all offsets and strides in elements, int64)::

        tile(a, a_off, a_rs, a_cs, b, b_off, ldb, c, c_off, ldc, bias, bias_off,
             k, mr, ncols, init, lr, copy, copy_off, copy_ld, fetch, fetch_off, fetch_lines)

    c[c_off + r * ldc + j] = start + sum_p a[a_off + r * a_rs + p * a_cs] * b[b_off + p * ldb + j]
    for r < mr (<= rows), j < ncols, p = 0..k-1 in order; start is 0, c's value or
    bias[bias_off + j] for init ZERO, ACCUMULATE, BIAS.  With SGD_STEP added to ZERO or
    ACCUMULATE, that sum t is not stored in c: w = bias (the array, at c's offsets)
    becomes w - lr * t, a product and a difference each rounded (``sgd_step``'s
    arithmetic); lr is a float64 holding a value of the dtype.  With copy_ld not 0, w
    is at copy[copy_off + r * copy_ld + j] instead, read and stored there only (the rows
    of the forward pass's panel copy of w: ``panel_width``).  ncols is vectors *
    lanes, or fewer (masked loads and stores) when partial_columns; the code for the
    partial case is only generated then.  With fetches (else fetch and fetch_lines are
    ignored): steps p < fetch_lines of k each prefetch the line at element fetch_off + p *
    LINE_BYTES / itemsize of b into L2 (fetch FETCH_B), or of copy for writing
    (FETCH_W); fetch_lines is never negative, and 0 for NO_FETCH (``fetch_ahead``).  A
    prefetch changes no value.  Arrays are passed for their data pointers; their shapes
    are not read.
    """

    @intrinsic
    def tile(typingctx, a, a_off, a_rs, a_cs, b, b_off, ldb, c, c_off, ldc, bias, bias_off,
             k, mr, ncols, init, lr, copy, copy_off, copy_ld, fetch, fetch_off, fetch_lines):
        if not all(isinstance(t, types.Array) for t in (a, b, c, bias, copy)):
            return None
        sig = types.void(a, a_off, a_rs, a_cs, b, b_off, ldb, c, c_off, ldc, bias, bias_off,
                         k, mr, ncols, init, lr, copy, copy_off, copy_ld, fetch, fetch_off,
                         fetch_lines)

        def codegen(context, builder, signature, args):
            argtys = signature.args
            i64 = ir.IntType(64)
            i32 = ir.IntType(32)
            data = [_data_pointer(context, builder, signature, args, i)
                    for i in (0, 4, 7, 10, 17)]
            a_ptr, b_ptr, c_ptr, bias_ptr, copy_ptr = data
            (a_off, a_rs, a_cs, b_off, ldb, c_off, ldc, bias_off, k, mr, ncols, init, copy_off,
             copy_ld, fetch, fetch_off, fetch_lines) = (
                _as_i64(context, builder, signature, args, i)
                for i in (1, 2, 3, 5, 6, 8, 9, 11, 12, 13, 14, 15, 18, 19, 20, 21, 22))

            fty = context.get_value_type(argtys[0].dtype)
            lanes = VECTOR_BYTES // (argtys[0].dtype.bitwidth // 8)
            align = argtys[0].dtype.bitwidth // 8
            vty = ir.VectorType(fty, lanes)
            vptr = vty.as_pointer()
            mask_ty = ir.VectorType(ir.IntType(1), lanes)
            suffix = f"v{lanes}f{argtys[0].dtype.bitwidth}"
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty] * 3), "llvm.fma." + suffix)
            masked_load = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vptr, i32, mask_ty, vty]),
                f"llvm.masked.load.{suffix}.p0")
            masked_store = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [vty, vptr, i32, mask_ty]),
                f"llvm.masked.store.{suffix}.p0")
            byte_ptr = ir.IntType(8).as_pointer()
            prefetch = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]),
                "llvm.prefetch.p0")
            zero_vec = ir.Constant(vty, [0.0] * lanes)
            undef = ir.Constant(vty, ir.Undefined)
            splat_mask = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)

            def splat(value):
                inserted = builder.insert_element(undef, value, ir.Constant(i32, 0))
                return builder.shuffle_vector(inserted, undef, splat_mask)

            def vec_at(ptr, index):
                return _vector_at(builder, ptr, index, vty)

            # Lane l of vector v is a column of the tile when v * lanes + l < ncols.
            ncols_splat = builder.insert_element(
                ir.Constant(ir.VectorType(i64, lanes), ir.Undefined), ncols, ir.Constant(i32, 0))
            ncols_splat = builder.shuffle_vector(
                ncols_splat, ir.Constant(ir.VectorType(i64, lanes), ir.Undefined), splat_mask)
            masks = [builder.icmp_signed(
                "<", ir.Constant(ir.VectorType(i64, lanes), [v * lanes + l for l in range(lanes)]),
                ncols_splat) for v in range(vectors)]

            def load(ptr, index, v, masked):
                if masked:
                    return builder.call(masked_load, [vec_at(ptr, index), ir.Constant(i32, align),
                                                      masks[v], zero_vec])
                return builder.load(vec_at(ptr, index), align=align)

            def store(value, ptr, index, v, masked):
                if masked:
                    builder.call(masked_store, [value, vec_at(ptr, index), ir.Constant(i32, align),
                                                masks[v]])
                else:
                    builder.store(value, vec_at(ptr, index), align=align)

            # Rows past mr repeat row mr - 1: valid addresses, results never stored.
            last = builder.sub(mr, ir.Constant(i64, 1))
            row_ids = [builder.select(builder.icmp_signed("<", ir.Constant(i64, r), mr),
                                      ir.Constant(i64, r), last) for r in range(rows)]
            a_rows = [builder.add(a_off, builder.mul(r, a_rs)) for r in row_ids]
            c_rows = [builder.add(c_off, builder.mul(r, ldc)) for r in row_ids]
            copy_rows = [builder.add(copy_off, builder.mul(r, copy_ld)) for r in row_ids]
            acc = [[cgutils.alloca_once(builder, vty) for _ in range(vectors)] for _ in range(rows)]

            sgd = builder.icmp_signed(">=", init, ir.Constant(i64, SGD_STEP))
            start_mode = builder.and_(init, ir.Constant(i64, SGD_STEP - 1))
            is_bias = builder.icmp_signed("==", start_mode, ir.Constant(i64, BIAS))
            is_acc = builder.icmp_signed("==", start_mode, ir.Constant(i64, ACCUMULATE))
            lr_value = context.cast(builder, args[16], argtys[16], argtys[0].dtype)

            zero, one = ir.Constant(i64, 0), ir.Constant(i64, 1)

            line = ir.Constant(i64, LINE_BYTES // (argtys[0].dtype.bitwidth // 8))

            def fetch_line(p, array_ptr, for_writing):
                """Prefetch line p of the fetch into L2 (prefetcht1), or for writing
                (prefetchw: the line taken from the other cores' caches)."""
                index = builder.add(fetch_off, builder.mul(p, line))
                builder.call(prefetch, [builder.bitcast(builder.gep(array_ptr, [index]), byte_ptr),
                                        ir.Constant(i32, int(for_writing)),
                                        ir.Constant(i32, 3 if for_writing else 2),
                                        ir.Constant(i32, 1)])

            def k_steps(start, stop, masked):
                """The rank-1 updates of rows start..stop - 1 of b into the accumulators;
                with fetches, the first fetch_lines of them each fetch a line too, in a
                loop of the fetch's kind (whether a prefetch is for writing is a constant
                of the instruction), and the others run without."""
                if not fetches:
                    k_loop(start, stop, masked, None)
                    return
                split = builder.add(start, fetch_lines)
                split = builder.select(builder.icmp_signed("<", split, stop), split, stop)
                is_w = builder.icmp_signed("==", fetch, ir.Constant(i64, FETCH_W))
                with builder.if_else(is_w) as (of_w, of_b):
                    with of_w:
                        k_loop(start, split, masked, lambda p: fetch_line(
                            builder.sub(p, start), copy_ptr, True))
                    with of_b:
                        k_loop(start, split, masked, lambda p: fetch_line(
                            builder.sub(p, start), b_ptr, False))
                k_loop(split, stop, masked, None)

            def k_loop(start, stop, masked, fetch_step):
                """Steps start..stop - 1 of k, each calling fetch_step(p) first if given."""
                with cgutils.for_range_slice(builder, start, stop, one, inc=True) as (p, _):
                    if fetch_step is not None:
                        fetch_step(p)
                    b_row = builder.add(b_off, builder.mul(p, ldb))
                    b_vecs = [load(b_ptr, builder.add(b_row, ir.Constant(i64, v * lanes)), v,
                                   masked) for v in range(vectors)]
                    step = builder.mul(p, a_cs)
                    for r in range(rows):
                        a_val = splat(builder.load(builder.gep(a_ptr, [builder.add(a_rows[r],
                                                                                  step)])))
                        for v in range(vectors):
                            builder.store(builder.call(fma, [a_val, b_vecs[v],
                                                             builder.load(acc[r][v])]), acc[r][v])

            def emit(masked):
                with builder.if_else(is_acc) as (from_c, other):
                    with from_c:
                        for r in range(rows):
                            for v in range(vectors):
                                index = builder.add(c_rows[r], ir.Constant(i64, v * lanes))
                                builder.store(load(c_ptr, index, v, masked), acc[r][v])
                    with other:
                        for v in range(vectors):
                            index = builder.add(bias_off, ir.Constant(i64, v * lanes))
                            with builder.if_else(is_bias) as (from_bias, from_zero):
                                with from_bias:
                                    start = load(bias_ptr, index, v, masked)
                                    for r in range(rows):
                                        builder.store(start, acc[r][v])
                                with from_zero:
                                    for r in range(rows):
                                        builder.store(zero_vec, acc[r][v])
                if masked:
                    # Rows of b whose whole vectors lie inside b are loaded unmasked (AVX2's
                    # masked load costs twice a plain one): their lanes past ncols read
                    # the next row, and only feed accumulator lanes that are never stored.
                    # The last rows, whose vectors could reach past b's end, are masked.
                    past = ir.Constant(i64, vectors * lanes)
                    past = builder.sub(past, ncols)  # lanes read past the tile's columns
                    no_stride = builder.icmp_signed("<", ldb, one)  # (k = 1 callers pass 0)
                    stride = builder.select(no_stride, one, ldb)
                    rows_at_end = builder.sdiv(builder.add(past, builder.sub(stride, one)), stride)
                    whole = builder.sub(k, rows_at_end)
                    whole = builder.select(no_stride, zero, whole)
                    whole = builder.select(builder.icmp_signed("<", whole, zero), zero, whole)
                    k_steps(zero, whole, False)
                    k_steps(whole, k, True)
                else:
                    k_steps(zero, k, False)
                def store_tile(ptr, row_offsets, value):
                    """Store value(r, v, index) at ptr + index, index = row_offsets[r] +
                    v * lanes, for the tile's rows r < mr and vectors v."""
                    for r in range(rows):
                        with cgutils.if_likely(builder,
                                               builder.icmp_signed("<", ir.Constant(i64, r), mr)):
                            for v in range(vectors):
                                index = builder.add(row_offsets[r], ir.Constant(i64, v * lanes))
                                store(value(r, v, index), ptr, index, v, masked)

                with builder.if_else(sgd) as (step, plain):
                    with step:
                        rate = splat(lr_value)

                        def stepped(w_ptr):  # w - lr * sum, w at the stored element's index
                            def value(r, v, index):
                                change = builder.fmul(rate, builder.load(acc[r][v]),
                                                      flags=_SGD_FLAGS)
                                return builder.fsub(load(w_ptr, index, v, masked), change,
                                                    flags=_SGD_FLAGS)
                            return value

                        # With a copy, w lives there (the forward pass's panels) and the
                        # array passed as bias is neither read nor written.
                        has_copy = builder.icmp_signed("!=", copy_ld, zero)
                        with builder.if_else(has_copy) as (with_copy, alone):
                            with with_copy:
                                store_tile(copy_ptr, copy_rows, stepped(copy_ptr))
                            with alone:
                                store_tile(bias_ptr, c_rows, stepped(bias_ptr))
                    with plain:
                        store_tile(c_ptr, c_rows, lambda r, v, index: builder.load(acc[r][v]))

            if not partial_columns:
                emit(False)
                return context.get_dummy_value()
            full = builder.icmp_signed("==", ncols, ir.Constant(i64, vectors * lanes))
            with builder.if_else(full) as (whole, partial):
                with whole:
                    emit(False)
                with partial:
                    emit(True)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_wide_tile = _make_tile_kernel(MR, NV, partial_columns=False, fetches=True)
_two_vector_tile = _make_tile_kernel(MR, 2, partial_columns=False)
_narrow_tile = _make_tile_kernel(MR_NARROW, 1, partial_columns=True)


@intrinsic
def _stack_panel(typingctx, like):
    """A 1-D C-contiguous array of like's dtype over PANEL_BYTES of the caller's stack.

    The buffer (64-byte aligned) lives as long as the compiled function that calls
    this, which allocates nothing on the heap for it.
    """
    if not isinstance(like, types.Array):
        return None
    array_type = types.Array(like.dtype, 1, "C")

    def codegen(context, builder, signature, args):
        item = like.dtype.bitwidth // 8
        float_type = context.get_value_type(like.dtype)
        storage = cgutils.alloca_once(builder, ir.ArrayType(float_type, PANEL_BYTES // item))
        storage.align = 64
        intp = context.get_value_type(types.intp)
        panel = context.make_array(array_type)(context, builder)
        context.populate_array(panel, data=builder.bitcast(storage, float_type.as_pointer()),
                               shape=[ir.Constant(intp, PANEL_BYTES // item)],
                               strides=[ir.Constant(intp, item)],
                               itemsize=ir.Constant(intp, item), meminfo=None)
        return panel._getvalue()

    return array_type(like), codegen


@intrinsic
def _pack_panel(typingctx, b, b_off, ldb, panel, kc):
    """panel[p * NR + j] = b[b_off + p * ldb + j] for p < kc, j < NR (in elements).

    NR = NV vectors; each row of the panel is NV vector loads and stores.
    """
    if not (isinstance(b, types.Array) and isinstance(panel, types.Array)):
        return None
    sig = types.void(b, b_off, ldb, panel, kc)

    def codegen(context, builder, signature, args):
        b_ptr, panel_ptr = (_data_pointer(context, builder, signature, args, i) for i in (0, 3))
        b_off, ldb, kc = (_as_i64(context, builder, signature, args, i) for i in (1, 2, 4))
        item = b.dtype.bitwidth // 8
        lanes = VECTOR_BYTES // item
        vector_type = ir.VectorType(context.get_value_type(b.dtype), lanes)
        i64 = ir.IntType(64)
        with cgutils.for_range(builder, kc) as loop:
            src = builder.add(b_off, builder.mul(loop.index, ldb))
            dst = builder.mul(loop.index, ir.Constant(i64, NV * lanes))
            for v in range(NV):
                step = ir.Constant(i64, v * lanes)
                value = builder.load(_vector_at(builder, b_ptr, builder.add(src, step),
                                                vector_type), align=item)
                builder.store(value, _vector_at(builder, panel_ptr, builder.add(dst, step),
                                                vector_type), align=VECTOR_BYTES)
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", **config.JIT_OPTIONS)
def copy_at(copy_stride, nr, i0, j0):
    """(offset, row stride) of element (i0, j0) of w in its panel copy, whose panels are
    copy_stride elements apart (``gemm_entry``); (0, 0), no copy, when copy_stride is 0."""
    if copy_stride == 0:
        return 0, 0
    return j0 // nr * copy_stride + i0 * nr + j0 % nr, nr


@njit(inline="always", **config.JIT_OPTIONS)
def fetch_ahead(i0, j0, m, k, n_wide, nr, panel_stride, copy_stride, init, line):
    """(fetch, fetch_off, fetch_lines) of the wide tile at row i0 of panel j0 // nr
    (``_make_tile_kernel``): the lines that the tiles after it will need, fetched while
    it computes, one per step of k, so that they do not wait for them.

    * An SGD step into a panel copy (copy_stride not 0): the next tile's rows of the
      copy (the next row tile, or the next panel's first), for writing.  The other core
      read them in its forward pass; taken now, the next tile's stores find them owned.
    * Else b in panel layout (panel_stride k * nr: the forward pass's weights): the next
      panel, from its first line on, the row tiles in turn taking k lines each (those
      after the last line, nothing).  The other core's update tasks stepped half of
      its lines in the batch before.
    * Else nothing (b in place: small layers' weights, narrow deltas).
    Only the tile's own loads and stores change values; a prefetch changes none.
    """
    if copy_stride != 0 and init & SGD_STEP:
        if i0 + MR < m:
            i_next, j_next, rows = i0 + MR, j0, min(MR, m - i0 - MR)
        elif j0 + nr < n_wide:
            i_next, j_next, rows = 0, j0 + nr, min(MR, m)
        else:
            return NO_FETCH, 0, 0
        return (FETCH_W, copy_at(copy_stride, nr, i_next, j_next)[0],
                min(k, rows * nr // line))
    if panel_stride == k * nr and j0 + nr < n_wide:
        fetched = i0 // MR * k  # lines of the next panel the earlier row tiles fetched
        left = panel_stride // line - fetched
        if left > 0:
            return FETCH_B, (j0 // nr + 1) * panel_stride + fetched * line, min(k, left)
    return NO_FETCH, 0, 0


@njit(**config.JIT_OPTIONS)
def _wide_panels_in_place(a, a_rs, a_cs, b, ldb, panel_stride, c, ldc, bias, m, k, n_wide,
                          init, lr, copy, copy_stride):
    """The first n_wide columns of gemm (a multiple of NR), b read where it is: panel p
    of b (columns p * NR ..) starts panel_stride * p elements into b, its rows ldb apart."""
    nr = panel_columns(a)
    line = LINE_BYTES // a.itemsize
    for j0 in range(0, n_wide, nr):
        for i0 in range(0, m, MR):
            copy_off, copy_ld = copy_at(copy_stride, nr, i0, j0)
            fetch, fetch_off, fetch_lines = fetch_ahead(i0, j0, m, k, n_wide, nr, panel_stride,
                                                        copy_stride, init, line)
            _wide_tile(a, i0 * a_rs, a_rs, a_cs, b, j0 // nr * panel_stride, ldb, c,
                       i0 * ldc + j0, ldc, bias, j0, k, min(MR, m - i0), nr, init, lr, copy,
                       copy_off, copy_ld, fetch, fetch_off, fetch_lines)


@njit(**config.JIT_OPTIONS)
def _wide_panels_packed(a, a_rs, a_cs, b, ldb, c, ldc, bias, m, k, n_wide, init, lr, copy,
                        copy_stride):
    """The first n_wide columns of gemm (a multiple of NR), b packed panel by panel.

    Each panel of b is copied PANEL_KC rows at a time into a stack buffer; every
    block of k after the first continues the sums stored in c, so each element is
    still one chain of fused multiply-adds over k in order.  An SGD_STEP applies to
    the last block only (the others store their sums in c).
    """
    nr = panel_columns(a)
    panel = _stack_panel(b)
    sgd = init & SGD_STEP
    for j0 in range(0, n_wide, nr):
        for p0 in range(0, k, PANEL_KC):
            kc = min(PANEL_KC, k - p0)
            _pack_panel(b, p0 * ldb + j0, ldb, panel, kc)
            start = init - sgd if p0 == 0 else np.int64(ACCUMULATE)
            if p0 + kc == k:
                start += sgd
            for i0 in range(0, m, MR):
                copy_off, copy_ld = copy_at(copy_stride, nr, i0, j0)
                _wide_tile(a, i0 * a_rs + p0 * a_cs, a_rs, a_cs, panel, 0, nr, c,
                           i0 * ldc + j0, ldc, bias, j0, kc, min(MR, m - i0), nr, start, lr,
                           copy, copy_off, copy_ld, NO_FETCH, 0, 0)


#: gemm_entry's pack argument: read b in place, pack its panels, or apply the packing
#: rule, all for b a (k, n) array with contiguous rows; or PANELS: b is already in
#: panel layout (``panel_width``).
IN_PLACE, PACKED, PACK_RULE, PANELS = 0, 1, 2, 3


def to_panels(B):
    """B (k, n) in panel layout (``panel_width``), as a new array; the unused columns are 0."""
    k, n = B.shape
    nr = panel_width(B.dtype)
    n_panels = -(-n // nr)
    padded = np.zeros((k, n_panels * nr), dtype=B.dtype)
    padded[:, :n] = B
    return np.ascontiguousarray(padded.reshape(k, n_panels, nr).transpose(1, 0, 2))


@njit(**config.JIT_OPTIONS)
def _gemm_body(a, a_rs, a_cs, b, ldb, c, ldc, bias, m, n, k, init, pack, lr, copy,
               copy_stride):
    """The product of ``gemm_entry`` on 1-D views of the operands (offsets in elements)."""
    lanes = VECTOR_BYTES // a.itemsize
    nr = panel_columns(a)
    wide_stop = n - n % nr
    panel_stride = nr  # elements from one panel of b to the next: b (k, n) row-major
    if pack == PANELS:
        panel_stride, ldb = k * nr, nr
    elif pack == PACK_RULE:
        pack = PACKED if m >= PACK_MIN_ROWS and k >= PACK_MIN_DEPTH else IN_PLACE
    if PACK_B and pack == PACKED and wide_stop > 0:  # a constant False: not compiled
        _wide_panels_packed(a, a_rs, a_cs, b, ldb, c, ldc, bias, m, k, wide_stop, init, lr,
                            copy, copy_stride)
    else:
        _wide_panels_in_place(a, a_rs, a_cs, b, ldb, panel_stride, c, ldc, bias, m, k,
                              wide_stop, init, lr, copy, copy_stride)
    two_stop = wide_stop + (n - wide_stop) // (2 * lanes) * 2 * lanes
    for j0 in range(wide_stop, two_stop, 2 * lanes):
        for i0 in range(0, m, MR):
            copy_off, copy_ld = copy_at(copy_stride, nr, i0, j0)
            _two_vector_tile(a, i0 * a_rs, a_rs, a_cs, b, j0 // nr * panel_stride + j0 % nr,
                             ldb, c, i0 * ldc + j0, ldc, bias, j0, k, min(MR, m - i0),
                             2 * lanes, init, lr, copy, copy_off, copy_ld, NO_FETCH, 0, 0)
    for j0 in range(two_stop, n, lanes):
        for i0 in range(0, m, MR_NARROW):
            copy_off, copy_ld = copy_at(copy_stride, nr, i0, j0)
            _narrow_tile(a, i0 * a_rs, a_rs, a_cs, b, j0 // nr * panel_stride + j0 % nr, ldb, c,
                         i0 * ldc + j0, ldc, bias, j0, k, min(MR_NARROW, m - i0),
                         min(lanes, n - j0), init, lr, copy, copy_off, copy_ld, NO_FETCH, 0,
                         0)


def gemm_entry(a_ptr, a_rs, a_cs, b_ptr, ldb, c_ptr, ldc, bias_ptr, m, n, k, init, pack, lr,
               copy_ptr, copy_stride):
    """c = start + a @ b on raw pointers: the function compiled once per dtype.

    a_ptr, b_ptr, c_ptr, bias_ptr point at the first element of a (m, k), b (k, n),
    c (m, n) and bias (n,), or with SGD_STEP in init at w (m, n, rows ldc apart, as
    c's); a_rs, a_cs, ldb, ldc are strides in elements (a's rows and columns, b's and
    c's rows); init as for ``gemm`` or ``gemm_sgd``, pack one of IN_PLACE, PACKED,
    PACK_RULE, or PANELS (b in panel layout, ldb not read); lr (float64) for SGD_STEP.
    copy_ptr, with copy_stride not 0 and SGD_STEP: where w (m, n) is read and stepped
    instead (bias_ptr is then not used), in panel layout (``panel_width``) with its
    panels copy_stride elements apart
    (element (i, j) at copy_ptr + (j // NR) * copy_stride + i * NR + j % NR).
    """
    if m == 0 or n == 0:
        return
    a, b = numba.carray(a_ptr, 1), numba.carray(b_ptr, 1)  # only their data pointers are read
    c, bias, copy = numba.carray(c_ptr, 1), numba.carray(bias_ptr, 1), numba.carray(copy_ptr, 1)
    _gemm_body(a, a_rs, a_cs, b, ldb, c, ldc, bias, m, n, k, init, pack, lr, copy, copy_stride)


def entry_symbol(dtype):
    """The symbol of the cell that holds the address of a Numba float type's gemm entry.

    Callers compiled by an older fastnn name the entry otherwise, and those names now
    lead to ``_stale_cache``, so that such a cache stops with a message rather than
    computing wrong products: ``fastnn_gemm_<dtype>`` (the entry itself, called
    directly), ``fastnn_gemm_address_<dtype>`` (a cell, from callers that read every
    3-D b as panels; a (1, k, n) view of b in place is now read as such),
    ``fastnn_gemm_cell_<dtype>`` (a cell, from callers that passed no lr),
    ``fastnn_gemm_lr_cell_<dtype>`` (a cell, from callers that passed no copy) and
    ``fastnn_gemm_copy_cell_<dtype>`` (a cell, from callers whose copy received the
    new w beside w itself).  Rename the cell again when what a caller passes means
    something new."""
    return f"fastnn_gemm_w_in_copy_cell_{dtype}"


#: The symbols of ``entry_symbol``'s older callers: called, or read as a cell.
_STALE_ENTRIES = "fastnn_gemm_{}"
_STALE_CELLS = ("fastnn_gemm_address_{}", "fastnn_gemm_cell_{}", "fastnn_gemm_lr_cell_{}",
                "fastnn_gemm_copy_cell_{}")


#: The C type of an entry: gemm_entry's arguments, pointers as void *.
_ENTRY_CTYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                                ctypes.c_void_p, *[ctypes.c_int64] * 5, ctypes.c_double,
                                ctypes.c_void_p, ctypes.c_int64)

#: The compiled entries (Numba cfuncs) by dtype name, as ``ensure_entry`` makes them.
ENTRIES = {}
_ENTRY_LOCK = threading.Lock()


def ensure_entry(dtype):
    """The gemm entry of a Numba float type (or its name): compiled, or loaded from the
    cache, on first use, and its address stored in the dtype's cell; a Numba ``cfunc``."""
    name = str(dtype)
    with _ENTRY_LOCK:
        if name not in ENTRIES:
            pointer = types.CPointer(getattr(types, name))
            signature = types.void(pointer, types.int64, types.int64, pointer, types.int64,
                                   pointer, types.int64, pointer, types.int64, types.int64,
                                   types.int64, types.int64, types.int64, types.float64,
                                   pointer, types.int64)
            ENTRIES[name] = numba.cfunc(signature, **config.JIT_OPTIONS)(gemm_entry)
            _CELLS[name].value = ENTRIES[name].address
    return ENTRIES[name]


def _first_call(name, *args):
    """What a dtype's cell points at until its entry exists: make the entry, then run it.

    Reached only by compiled code loaded from the cache before any compilation of its
    dtype in this process (a compilation makes the entry first: ``_call_gemm``), once
    per dtype and process (from a compiled caller's thread, taking the GIL)."""
    try:
        _ENTRY_CTYPE(ensure_entry(name).address)(*args)
    except BaseException:  # a ctypes callback cannot raise: the product would be skipped
        traceback.print_exc()
        os.abort()


def _stale_cache(name, *args):
    """What a caller compiled before the cells calls (``entry_symbol``): nothing to run."""
    print(f"fastnn: Numba's cache ({config.CACHE_PATH or 'in the package'}) holds kernels "
          f"compiled by an older fastnn, which call the {name} gemm entry by another name; "
          "clear it (delete its fastnn files) and run again", file=sys.stderr, flush=True)
    os.abort()


# Callers do not call an entry's symbol but load its address from the dtype's cell, so
# code loaded from the cache links to the cell, which always exists, whether or not
# the entry does yet: a run compiles (or loads) the entries of its own dtypes only.
_CELLS = {name: ctypes.c_void_p() for name in ("float32", "float64")}
_FIRST_CALLS = {name: _ENTRY_CTYPE(functools.partial(_first_call, name)) for name in _CELLS}
_STALE_CALLS = {name: _ENTRY_CTYPE(functools.partial(_stale_cache, name)) for name in _CELLS}
_STALE_CALL_CELLS = {name: ctypes.c_void_p(ctypes.cast(call, ctypes.c_void_p).value)
                     for name, call in _STALE_CALLS.items()}
if not numba.config.DISABLE_JIT:
    for _name, _cell in _CELLS.items():
        _cell.value = ctypes.cast(_FIRST_CALLS[_name], ctypes.c_void_p).value
        llvm.add_symbol(entry_symbol(_name), ctypes.addressof(_cell))
        llvm.add_symbol(_STALE_ENTRIES.format(_name), _STALE_CALL_CELLS[_name].value)
        for _stale in _STALE_CELLS:
            llvm.add_symbol(_stale.format(_name), ctypes.addressof(_STALE_CALL_CELLS[_name]))


@intrinsic
def _call_gemm(typingctx, a, b, c, bias, init, pack, lr, copy, copy_stride):
    """Call the gemm entry of a's dtype (through its cell) with the operands' pointers and
    strides."""
    if not all(isinstance(t, types.Array) for t in (a, b, c, bias, copy)):
        return None
    nr = panel_width(str(a.dtype))
    ensure_entry(a.dtype)  # compiled with its first caller, inside the compile notice
    sig = types.void(a, b, c, bias, init, pack, lr, copy, copy_stride)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        item = ir.Constant(i64, a.dtype.bitwidth // 8)
        a_arr, b_arr, c_arr, bias_arr, copy_arr = (
            context.make_array(t)(context, builder, value)
            for t, value in zip(signature.args[:4] + signature.args[7:8], args[:4] + args[7:8]))
        m, k = cgutils.unpack_tuple(builder, a_arr.shape, 2)
        n = cgutils.unpack_tuple(builder, c_arr.shape, 2)[1]
        a_rs, a_cs = (builder.sdiv(stride, item)
                      for stride in cgutils.unpack_tuple(builder, a_arr.strides, 2))
        ldb = builder.sdiv(cgutils.unpack_tuple(builder, b_arr.strides, b.ndim)[b.ndim - 2],
                           item)
        pack = _as_i64(context, builder, signature, args, 5)
        if b.ndim == 3:  # panels (rows NR apart), or a (1, k, n) view of b in place
            pack = builder.select(builder.icmp_signed("==", ldb, ir.Constant(i64, nr)),
                                  ir.Constant(i64, PANELS), ir.Constant(i64, PACK_RULE))
        ldc = builder.sdiv(cgutils.unpack_tuple(builder, c_arr.strides, 2)[0], item)
        pointer = context.get_value_type(a.dtype).as_pointer()
        entry_type = ir.FunctionType(ir.VoidType(), [pointer, i64, i64, pointer, i64, pointer,
                                                     i64, pointer, i64, i64, i64, i64, i64,
                                                     ir.DoubleType(), pointer, i64])
        cell = builder.module.globals.get(entry_symbol(a.dtype))
        if cell is None:  # declared once per module, defined by the registered symbol
            cell = ir.GlobalVariable(builder.module, entry_type.as_pointer(),
                                     entry_symbol(a.dtype))
        builder.call(builder.load(cell), [a_arr.data, a_rs, a_cs, b_arr.data, ldb, c_arr.data, ldc,
                             bias_arr.data, m, n, k,
                             _as_i64(context, builder, signature, args, 4), pack,
                             context.cast(builder, args[6], signature.args[6], types.float64),
                             copy_arr.data, _as_i64(context, builder, signature, args, 8)])
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", **config.JIT_OPTIONS)
def gemm(a, b, c, bias, init):
    """c = start + a @ b, with start 0, c or bias[None, :] for init ZERO, ACCUMULATE, BIAS.

    a (m, k) at any strides (a transposed view is fine), b (k, n) and c (m, n) with
    contiguous rows, bias (n,) contiguous (any 1-D array of the dtype when unused).
    Every element of c is one sum over p = 0..k-1 in order, fused multiply-adds.
    b is packed by the rule of ``PACK_B``, ``PACK_MIN_ROWS`` and ``PACK_MIN_DEPTH``; or
    b is C-contiguous of shape (ceil(n / NR), k, NR), the panel layout of the (k, n)
    matrix (``panel_width``), read as it is; or b is a (1, k, n) C-contiguous view of
    the (k, n) matrix, which that rule applies to (a caller that reads some matrices
    from panels and others in place passes both as 3-D arrays of one type, and so
    compiles one call: ``epoch.forward_weights``; a (1, k, NR) view is read as one
    panel, the same memory).  Every form gives bitwise the same c.
    Runs the compiled ``gemm_entry`` of the dtype (see the module's docstring).
    """
    _call_gemm(a, b, c, bias, init, np.int64(PACK_RULE), 0.0, c, 0)


@njit(inline="always", **config.JIT_OPTIONS)
def gemm_sgd(a, b, c, w, init, lr, w_panels=None):
    """w -= lr * (start + a @ b), with start 0 or c for init ZERO or ACCUMULATE: a plain
    SGD step applied from the registers, tile by tile, as each tile of the sum is done;
    with lr 0, c = start + a @ b as ``gemm`` (one call for a caller that does either).
    w_panels, if given and not empty: where w is, instead of w: the same rows in panel
    layout, an array (ceil(n / NR), >= m, NR) with rows NR apart (``panel_width``; a
    row slice of the layout), read and stepped there (its columns past n untouched),
    and w is neither read nor written (the update tasks step the forward pass's panels
    of W, and ``epoch.unpack_weights`` copies them into the parameters later).

    w must have c's shape and row stride (rows of the parameters whose gradient c would
    hold: the tiles address w at c's offsets); lr a scalar of the dtype.  c is not written
    (or, when b is packed in blocks of k, holds the sums of the blocks before the
    last).  Each w is bitwise ``gemm`` then ``optimizers.sgd_step``'s w - lr * g: an
    update task's weight rows are written while the next tile computes, not in a loop
    after the product, which with 2 threads waits for the other core's copies of those
    lines to be invalidated (docs/benchmarks.md).
    """
    step = SGD_STEP if lr != 0 else 0  # without SGD_STEP the tiles do not read w
    if w_panels is None:  # pruned by Numba when w_panels is omitted or None
        _call_gemm(a, b, c, w, init + step, np.int64(PACK_RULE), lr, c, 0)
    else:
        copy_stride = w_panels.strides[0] // w_panels.itemsize if w_panels.size > 0 else 0
        _call_gemm(a, b, c, w, init + step, np.int64(PACK_RULE), lr, w_panels, copy_stride)


@njit(**config.JIT_OPTIONS)
def gemm_with(a, b, c, bias, init, pack):
    """``gemm`` with b's wide panels packed (pack True) or read in place (pack False).

    Both give bitwise the same c; the 512-bit code has no packed path and reads b in
    place either way.  The tests and scripts/gemm_vs_blas.py use it to measure both.
    """
    _call_gemm(a, b, c, bias, init, np.int64(PACKED if pack else IN_PLACE), 0.0, c, 0)


#: Side of the square blocks ``transpose_block`` moves: the elements of a 256-bit vector.
TRANSPOSE_BYTES = 32


@intrinsic
def transpose_block(typingctx, src, src_off, lds, dst, dst_off, ldd):
    """dst[dst_off + j * ldd + i] = src[src_off + i * lds + j] for i, j < L, L x L block.

    L = TRANSPOSE_BYTES // itemsize (8 float32, 4 float64).  Loads L rows of src as
    vectors, transposes them in registers with log2(L) rounds of interleaving
    shuffles (round: row 2i, 2i+1 <- low, high halves of rows i and i + L/2
    interleaved) and stores L rows of dst: 2 L memory operations instead of 2 L^2.
    Offsets and strides are in elements.
    """
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array)):
        return None
    sig = types.void(src, src_off, lds, dst, dst_off, ldd)

    def codegen(context, builder, signature, args):
        argtys = signature.args
        src_ptr, dst_ptr = (_data_pointer(context, builder, signature, args, i) for i in (0, 3))
        src_off, lds, dst_off, ldd = (_as_i64(context, builder, signature, args, i)
                                      for i in (1, 2, 4, 5))
        item = argtys[0].dtype.bitwidth // 8
        lanes = TRANSPOSE_BYTES // item
        vty = ir.VectorType(context.get_value_type(argtys[0].dtype), lanes)
        i32, i64 = ir.IntType(32), ir.IntType(64)
        half = lanes // 2
        low = ir.Constant(ir.VectorType(i32, lanes),
                          [q // 2 + (lanes if q % 2 else 0) for q in range(lanes)])
        high = ir.Constant(ir.VectorType(i32, lanes),
                           [half + q // 2 + (lanes if q % 2 else 0) for q in range(lanes)])

        def row_pointer(ptr, offset, stride, row):
            index = builder.add(offset, builder.mul(ir.Constant(i64, row), stride))
            return _vector_at(builder, ptr, index, vty)

        rows = [builder.load(row_pointer(src_ptr, src_off, lds, i), align=item)
                for i in range(lanes)]
        for _ in range(lanes.bit_length() - 1):
            shuffled = []
            for i in range(half):
                shuffled.append(builder.shuffle_vector(rows[i], rows[i + half], low))
                shuffled.append(builder.shuffle_vector(rows[i], rows[i + half], high))
            rows = shuffled
        for j in range(lanes):
            builder.store(rows[j], row_pointer(dst_ptr, dst_off, ldd, j), align=item)
        return context.get_dummy_value()

    return sig, codegen


@njit(**config.JIT_OPTIONS)
def transpose(src, dst):
    """dst = src.T, for src (m, n) and dst (n, m) with contiguous rows (any row strides).

    Square blocks of one 256-bit vector's elements go through registers
    (``transpose_block``), the edges element by element.  Not inlined: compiled once,
    not again in each caller (inlined, the delta propagation through W cost the
    default command line's first run about 1 s more of compiling).
    """
    m, n = src.shape
    lds, ldd = src.strides[0] // src.itemsize, dst.strides[0] // dst.itemsize
    tile = TRANSPOSE_BYTES // src.itemsize
    m_full, n_full = m - m % tile, n - n % tile
    for i0 in range(0, m_full, tile):
        for j0 in range(0, n_full, tile):
            transpose_block(src, i0 * lds + j0, lds, dst, j0 * ldd + i0, ldd)
        for j in range(n_full, n):
            for i in range(i0, i0 + tile):
                dst[j, i] = src[i, j]
    for i in range(m_full, m):
        for j in range(n):
            dst[j, i] = src[i, j]


if numba.config.DISABLE_JIT:
    # With NUMBA_DISABLE_JIT the kernels run as Python (for debugging), where an
    # intrinsic cannot run: the product is then NumPy's, with its own summation
    # order, and the block transpose an element loop.
    def gemm_with(a, b, c, bias, init, pack):  # noqa: F811  (replaces the compiled one)
        """c = start + a @ b as above, computed by NumPy (pack is ignored)."""
        start = c.copy() if init == ACCUMULATE else (bias if init == BIAS else 0)
        if b.ndim == 3:  # panel layout: back to (k, n)
            b = b.transpose(1, 0, 2).reshape(b.shape[1], -1)[:, : c.shape[1]]
        c[...] = start + a @ b

    def gemm(a, b, c, bias, init):  # noqa: F811
        """c = start + a @ b as above, computed by NumPy."""
        gemm_with(a, b, c, bias, init, False)

    def gemm_sgd(a, b, c, w, init, lr, w_panels=None):  # noqa: F811
        """w -= lr * (start + a @ b) as above, the sum computed by NumPy (into c); with
        w_panels, the step applies to w's rows there instead."""
        gemm_with(a, b, c, c, init, False)
        if lr == 0:
            return
        if w_panels is None or w_panels.size == 0:
            w -= lr * c
            return
        nr = w_panels.shape[2]
        for p in range(w_panels.shape[0]):
            columns = c[:, p * nr : (p + 1) * nr]
            w_panels[p, : c.shape[0], : columns.shape[1]] -= lr * columns

    def transpose_block(src, src_off, lds, dst, dst_off, ldd):  # noqa: F811
        """The block transpose above, element by element (src and dst contiguous)."""
        lanes = TRANSPOSE_BYTES // src.itemsize
        for i in range(lanes):
            for j in range(lanes):
                dst.flat[dst_off + j * ldd + i] = src.flat[src_off + i * lds + j]

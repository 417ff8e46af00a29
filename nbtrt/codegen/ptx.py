"""Inline-PTX intrinsics for the tensor-core templates (numba-cuda has no mma, ldmatrix or raw loads).

Each function is a Numba ``@intrinsic`` whose lowering emits one PTX instruction through
``builder.asm`` (DESIGN.md §3: verified on the H100), so generated kernels call them like functions:

- ``mma_f16(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3)`` → 4 float32: ``mma.sync.aligned.m16n8k16.row.col
  .f32.f16.f16.f32``. A (16×16, row-major) arrives as four 32-bit registers of two halves each, B
  (16×8, column-major) as two, C/D (16×8 float32) as four. With ``g = lane // 4`` and ``t = lane % 4``
  a thread holds A[g, 2t:2t+2] (a0), A[g+8, 2t:2t+2] (a1), A[g, 2t+8:2t+10] (a2), A[g+8, 2t+8:2t+10]
  (a3); B[2t:2t+2, g] (b0), B[2t+8:2t+10, g] (b1); C[g, 2t:2t+2] (c0, c1), C[g+8, 2t:2t+2] (c2, c3).
- ``mma_tf32(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3)``: ``m16n8k8 .tf32``; one element per register:
  A[g, t], A[g+8, t], A[g, t+4], A[g+8, t+4]; B[t, g], B[t+4, g]; C as above.
- ``mma_s8(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3)`` → 4 int32: ``m16n8k32 .s32.s8.s8.s32``; each
  register holds four int8 along k, byte for byte where ``mma_f16`` has two halves: A[g, 4t:4t+4] (a0),
  A[g+8, 4t:4t+4] (a1), A[g, 4t+16:4t+20] (a2), A[g+8, 4t+16:4t+20] (a3); B[4t:4t+4, g] (b0),
  B[4t+16:4t+20, g] (b1); C as above, int32 (exact sums).
- ``ldsm_x4(addr)`` / ``ldsm_x4_t(addr)`` → 4 uint32: ``ldmatrix.sync.aligned.m8n8.x4(.trans).shared.b16``;
  lane l gives the shared address of row l % 8 of 8×8 matrix l // 8 and receives, of each matrix i,
  register i = its elements [l // 4, 2(l % 4) : 2(l % 4) + 2] (transposed with ``.trans``). For 32-bit
  elements (tf32) ``ldsm_x4`` of a row-major 8×4 block gives element [l // 4, l % 4].
- ``cp_async16(dst, array, index, ok)``: ``cp.async.cg.shared.global`` of the 16 bytes at element
  ``index`` of a global array to shared address ``dst`` (asynchronous, through L2 only); when ``ok`` is
  false nothing is read and the 16 bytes are zero-filled (the src-size operand is 0).
  ``cp_async_commit()`` closes a group of copies; ``cp_async_wait<N>()`` (N = 0..3) waits until at
  most N of this thread's groups are still in flight (a barrier then makes every thread's copies visible).
- ``st_v4(array, index, r0, r1, r2, r3)``: ``st.global.v4.b32``, 16 bytes (four 32-bit registers,
  e.g. eight halves packed by ``pack_f16``) stored at element ``index`` of a global array (16-byte aligned).
- ``ld_v4(array, index)`` → 4 uint32: ``ld.global.v4.b32``, the 16 bytes at element ``index`` of a
  global array (16-byte aligned), e.g. eight halves that ``unpack_f16`` widens; ``ldg_v4_f32(array,
  index)`` → 4 float32: ``ld.global.nc.v4.f32`` (read-only data path), four of a float32 constant.
- ``unpack_f16(bits)`` → 2 float32: the halves in the low and high 16 bits of a 32-bit register.
- ``st_v2(array, index, r0, r1)`` / ``ld_v2(array, index)``: the same with 8 bytes (8-byte aligned),
  e.g. eight int8; ``pack_s8(a, b, c, d)`` → uint32: the low bytes of four int32 (``prmt``), a in
  the lowest; ``dp4a(a, b, c)`` → int32: ``dp4a.s32.s32``, c plus the four products of a's and b's
  signed bytes, byte by byte (the CUDA-core int8 kernels' multiply-add); ``unpack_s8(bits)`` → 4
  int32: its four bytes sign-extended (``prmt``), lowest first;
  ``unpack_s8_f32(bits)`` → 4 float32: byte q as the float 2^23 + 128 + q (one ``prmt`` each under
  2^23's exponent bits, after flipping the sign bits), exact: ``int8.unpacked_float`` subtracts.
- ``spread_s8(bits)`` → (even, odd): bytes 0, 2 and bytes 1, 3 of a word sign-extended into the 16-bit
  halves of two words; ``max_s16x2(a, b)``: ``max.s16x2``, both halves at once (sm_90);
  ``gather_s8(even, odd)`` → the word again from the halves' low bytes (int8 max pools, 16 per thread).
- ``ld_cg(array, index)`` → float32: ``ld.global.cg.f32``, element ``index`` of a float32 global array
  read through L2 only (never a stale L1 line: for data other blocks of the same launch wrote);
  ``ld_cg_s32(array, index)`` → int32 reads the element's 32 bits as an integer, and ``st_s32(array,
  index, value)`` stores an int32's bits there (integer partial sums in a float32 scratch array).
- ``shared_addr(array)``: the 32-bit shared-window address of a shared array's first element;
  ``sts_f32(addr, x)`` / ``lds_v4_f32(addr)`` → 4 float32: ``st.shared.f32`` / ``ld.shared.v4.f32`` at
  such an address (16-byte aligned for the vector).
- ``f32_bits(x)`` → int32, ``bits_f32(i)`` → float32: a register's bits as the other type (``mov.b32``;
  int8.py's conversions without conversion instructions).
- ``bits16(array, i)`` → uint32: the raw 16 bits of element i of a 2-byte array (zero-extended).
- ``pack_f16(lo, hi)`` → uint32: two float32 rounded to halves, ``lo`` in the low 16 bits;
  ``tf32(x)`` → uint32: float32 rounded (to nearest, away) to tf32.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.cuda.extending import intrinsic

_I32, _I64, _F32 = ir.IntType(32), ir.IntType(64), ir.FloatType()


def _asm(builder, result, args, text, constraints, memory=False):
    """One inline-PTX instruction. ``memory``: it touches memory, so it is volatile and clobbers
    memory: it stays in program order with the barriers, fences and other memory operations (else
    LLVM would e.g. hoist a loop-invariant ldmatrix out of the K loop, past the barriers, as if it
    were a pure function of its address)."""
    ftype = ir.FunctionType(result, [a.type for a in args])
    if memory:
        constraints += ",~{memory}" if constraints else "~{memory}"
    return builder.asm(ftype, text, constraints, args, side_effect=memory)


def _asm_tuple(context, builder, signature, args, text, constraints, memory=False):
    """``_asm`` of an instruction with several results, returned as the intrinsic's tuple (its return
    type, a UniTuple of float32 or 32-bit integers, says how many)."""
    ret = signature.return_type
    out = _asm(builder, ir.LiteralStructType([_F32 if ret.dtype == types.float32 else _I32] * ret.count), args,
               text, constraints, memory)
    return context.make_tuple(builder, ret, [builder.extract_value(out, i) for i in range(ret.count)])


def _mma(shape_ptx: str, acc: str = "f32"):
    """An mma whose accumulators are float32 (``acc`` "f32") or int32 ("s32")."""
    nb, reg = (types.float32, "f") if acc == "f32" else (types.int32, "r")

    @intrinsic
    def mma(typingctx, a0, a1, a2, a3, b0, b1, c0, c1, c2, c3):
        sig = types.UniTuple(nb, 4)(*[types.uint32] * 6, *[nb] * 4)

        def codegen(context, builder, signature, args):
            return _asm_tuple(context, builder, signature, args,
                              f"mma.sync.aligned.{shape_ptx}.{acc} {{$0,$1,$2,$3}}, {{$4,$5,$6,$7}}, {{$8,$9}}, "
                              "{$10,$11,$12,$13};", ",".join([f"={reg}"] * 4 + ["r"] * 6 + [reg] * 4))
        return sig, codegen
    return mma


mma_f16 = _mma("m16n8k16.row.col.f32.f16.f16")
mma_tf32 = _mma("m16n8k8.row.col.f32.tf32.tf32")
mma_s8 = _mma("m16n8k32.row.col.s32.s8.s8", "s32")


def _ldsm(trans: str):
    @intrinsic
    def ldsm(typingctx, addr):
        sig = types.UniTuple(types.uint32, 4)(types.uint32)

        def codegen(context, builder, signature, args):
            return _asm_tuple(context, builder, signature, args,
                              f"ldmatrix.sync.aligned.m8n8.x4{trans}.shared.b16 {{$0,$1,$2,$3}}, [$4];",
                              "=r,=r,=r,=r,r", memory=True)
        return sig, codegen
    return ldsm


ldsm_x4 = _ldsm("")
ldsm_x4_t = _ldsm(".trans")


@intrinsic
def shared_addr(typingctx, array):
    sig = types.uint32(array)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        generic = builder.ptrtoint(data, _I64)
        return builder.trunc(_asm(builder, _I64, [generic], "cvta.to.shared.u64 $0, $1;", "=l,l"), _I32)
    return sig, codegen


def _element_pointer(context, builder, arrty, array, index, itype):
    data = context.make_array(arrty)(context, builder, array).data
    ptr = builder.gep(data, [index])
    return builder.bitcast(ptr, itype.as_pointer())


def _address(context, builder, arrty, array, index):
    """The 64-bit global address of element ``index`` of an array (an inline-PTX operand)."""
    return builder.ptrtoint(_element_pointer(context, builder, arrty, array, index, ir.IntType(8)), _I64)


@intrinsic
def bits16(typingctx, array, index):
    sig = types.uint32(array, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1], ir.IntType(16))
        return builder.zext(builder.load(ptr), _I32)
    return sig, codegen


@intrinsic
def pack_f16(typingctx, lo, hi):
    sig = types.uint32(types.float32, types.float32)

    def codegen(context, builder, signature, args):
        lo, hi = args
        return _asm(builder, _I32, [hi, lo], "cvt.rn.f16x2.f32 $0, $1, $2;", "=r,f,f")
    return sig, codegen


@intrinsic
def tf32(typingctx, x):
    sig = types.uint32(types.float32)

    def codegen(context, builder, signature, args):
        return _asm(builder, _I32, list(args), "cvt.rna.tf32.f32 $0, $1;", "=r,f")
    return sig, codegen


@intrinsic
def cp_async16(typingctx, dst, array, index, ok):
    sig = types.void(types.uint32, array, types.int64, types.boolean)

    def codegen(context, builder, signature, args):
        dst, arr, index, ok = args
        index = builder.select(ok, index, ir.Constant(_I64, 0))  # a valid address even when nothing is read
        src = _address(context, builder, signature.args[1], arr, index)
        size = builder.select(ok, ir.Constant(_I32, 16), ir.Constant(_I32, 0))
        _asm(builder, ir.VoidType(), [dst, src, size], "cp.async.cg.shared.global [$0], [$1], 16, $2;", "r,l,r",
             memory=True)
        return context.get_dummy_value()
    return sig, codegen


def _vector_store(n: int):
    """Codegen of ``st.global.v<n>.b32``: n 32-bit registers at element ``index`` of a global array."""
    text = f"st.global.v{n}.b32 [$0], {{{','.join(f'${k + 1}' for k in range(n))}}};"

    def codegen(context, builder, signature, args):
        ptr = _address(context, builder, signature.args[0], args[0], args[1])
        _asm(builder, ir.VoidType(), [ptr] + list(args[2:]), text, ",".join(["l"] + ["r"] * n), memory=True)
        return context.get_dummy_value()
    return codegen


def _vector_load(n: int, space: str = "global", kind: str = "b32"):
    """Codegen of ``ld.global.v<n>.b32``: n 32-bit registers from element ``index`` of a global array
    (``space`` "global.nc": through the read-only data path, for constants; ``kind`` "f32": as float32)."""
    text = f"ld.{space}.v{n}.{kind} {{{','.join(f'${k}' for k in range(n))}}}, [${n}];"
    reg = "=f" if kind == "f32" else "=r"

    def codegen(context, builder, signature, args):
        ptr = _address(context, builder, signature.args[0], args[0], args[1])
        return _asm_tuple(context, builder, signature, [ptr], text, ",".join([reg] * n + ["l"]))
    return codegen


@intrinsic
def st_v4(typingctx, array, index, r0, r1, r2, r3):
    return types.void(array, types.int64, *[types.uint32] * 4), _vector_store(4)


@intrinsic
def ld_v4(typingctx, array, index):
    return types.UniTuple(types.uint32, 4)(array, types.int64), _vector_load(4)


@intrinsic
def ldg_v4_f32(typingctx, array, index):
    return types.UniTuple(types.float32, 4)(array, types.int64), _vector_load(4, "global.nc", "f32")


@intrinsic
def st_v2(typingctx, array, index, r0, r1):
    return types.void(array, types.int64, *[types.uint32] * 2), _vector_store(2)


@intrinsic
def ld_v2(typingctx, array, index):
    return types.UniTuple(types.uint32, 2)(array, types.int64), _vector_load(2)


@intrinsic
def pack_s8(typingctx, a, b, c, d):
    sig = types.uint32(types.int32, types.int32, types.int32, types.int32)

    def codegen(context, builder, signature, args):
        return _asm(builder, _I32, list(args), "{ .reg .b32 lo, hi; prmt.b32 lo, $1, $2, 0x0040; "
                    "prmt.b32 hi, $3, $4, 0x0040; prmt.b32 $0, lo, hi, 0x5410; }", "=r,r,r,r,r")
    return sig, codegen


@intrinsic
def dp4a(typingctx, a, b, c):
    def codegen(context, builder, signature, args):
        return _asm(builder, _I32, list(args), "dp4a.s32.s32 $0, $1, $2, $3;", "=r,r,r,r")
    return types.int32(types.int32, types.int32, types.int32), codegen


def _unpack(result, count: int, text: str):
    """An intrinsic of one 32-bit word giving ``count`` values of ``result`` through the PTX ``text``
    (the results are $0.., the word is $count)."""
    reg = "=f" if result == types.float32 else "=r"

    @intrinsic
    def unpack(typingctx, bits):
        def codegen(context, builder, signature, args):
            return _asm_tuple(context, builder, signature, list(args), text, ",".join([reg] * count + ["r"]))
        return types.UniTuple(result, count)(types.uint32), codegen
    return unpack


unpack_s8 = _unpack(types.int32, 4, "prmt.b32 $0, $4, 0, 0x8880; prmt.b32 $1, $4, 0, 0x9991; "
                    "prmt.b32 $2, $4, 0, 0xAAA2; prmt.b32 $3, $4, 0, 0xBBB3;")  # byte k, its sign bit (8 + k) above it
unpack_s8_f32 = _unpack(types.float32, 4, "{ .reg .b32 t, m; xor.b32 t, $4, 0x80808080; mov.b32 m, 0x4B000000; "
                        "prmt.b32 $0, t, m, 0x7650; prmt.b32 $1, t, m, 0x7651; prmt.b32 $2, t, m, 0x7652; "
                        "prmt.b32 $3, t, m, 0x7653; }")  # byte k + 128 under 2^23's exponent: the float 2^23 + 128 + q
spread_s8 = _unpack(types.uint32, 2, "prmt.b32 $0, $2, 0, 0xA280; prmt.b32 $1, $2, 0, 0xB391;")
unpack_f16 = _unpack(types.float32, 2, "{ .reg .b16 lo, hi; mov.b32 {lo, hi}, $2; cvt.f32.f16 $0, lo; "
                     "cvt.f32.f16 $1, hi; }")


def _word_op(text: str):
    """An intrinsic of two 32-bit words giving one through the single instruction ``text``."""
    @intrinsic
    def word_op(typingctx, a, b):
        def codegen(context, builder, signature, args):
            return _asm(builder, _I32, list(args), text, "=r,r,r")
        return types.uint32(types.uint32, types.uint32), codegen
    return word_op


max_s16x2 = _word_op("max.s16x2 $0, $1, $2;")
gather_s8 = _word_op("prmt.b32 $0, $1, $2, 0x6240;")  # bytes: even's 0, odd's 0, even's 2, odd's 2


def _move(src, dst):
    """``mov.b32``: a 32-bit register's bits seen as the other type (no conversion instruction)."""
    nb = {"f": types.float32, "r": types.int32}
    irt = {"f": _F32, "r": _I32}

    @intrinsic
    def move(typingctx, x):
        def codegen(context, builder, signature, args):
            return _asm(builder, irt[dst], list(args), "mov.b32 $0, $1;", f"={dst},{src}")
        return nb[dst](nb[src]), codegen
    return move


f32_bits = _move("f", "r")
bits_f32 = _move("r", "f")


@intrinsic
def sts_f32(typingctx, addr, value):
    sig = types.void(types.uint32, types.float32)

    def codegen(context, builder, signature, args):
        _asm(builder, ir.VoidType(), list(args), "st.shared.f32 [$0], $1;", "r,f", memory=True)
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def lds_v4_f32(typingctx, addr):
    sig = types.UniTuple(types.float32, 4)(types.uint32)

    def codegen(context, builder, signature, args):
        return _asm_tuple(context, builder, signature, list(args), "ld.shared.v4.f32 {$0,$1,$2,$3}, [$4];",
                          "=f,=f,=f,=f,r", memory=True)
    return sig, codegen


def _ld_cg(ptx_type: str, nb, irt, reg: str):
    @intrinsic
    def ld_cg(typingctx, array, index):
        sig = nb(array, types.int64)

        def codegen(context, builder, signature, args):
            ptr = _address(context, builder, signature.args[0], args[0], args[1])
            return _asm(builder, irt, [ptr], f"ld.global.cg.{ptx_type} $0, [$1];", f"={reg},l", memory=True)
        return sig, codegen
    return ld_cg


ld_cg = _ld_cg("f32", types.float32, _F32, "f")
ld_cg_s32 = _ld_cg("s32", types.int32, _I32, "r")


@intrinsic
def st_s32(typingctx, array, index, value):
    sig = types.void(array, types.int64, types.int32)

    def codegen(context, builder, signature, args):
        ptr = _address(context, builder, signature.args[0], args[0], args[1])
        _asm(builder, ir.VoidType(), [ptr, args[2]], "st.global.s32 [$0], $1;", "l,r", memory=True)
        return context.get_dummy_value()
    return sig, codegen


def _no_operand(text: str):
    @intrinsic
    def instruction(typingctx):
        def codegen(context, builder, signature, args):
            _asm(builder, ir.VoidType(), [], text, "", memory=True)
            return context.get_dummy_value()
        return types.void(), codegen
    return instruction


cp_async_commit = _no_operand("cp.async.commit_group;")
CP_ASYNC_WAITS = {f"cp_async_wait{n}": _no_operand(f"cp.async.wait_group {n};") for n in range(4)}


INTRINSICS = {"mma_f16": mma_f16, "mma_tf32": mma_tf32, "mma_s8": mma_s8, "ldsm_x4": ldsm_x4,
              "ldsm_x4_t": ldsm_x4_t, "shared_addr": shared_addr, "bits16": bits16, "pack_f16": pack_f16,
              "tf32": tf32, "cp_async16": cp_async16, "st_v4": st_v4, "ld_v4": ld_v4, "ld_cg": ld_cg,
              "ldg_v4_f32": ldg_v4_f32, "ld_cg_s32": ld_cg_s32, "st_s32": st_s32, "unpack_f16": unpack_f16,
              "st_v2": st_v2, "ld_v2": ld_v2, "pack_s8": pack_s8, "dp4a": dp4a, "unpack_s8": unpack_s8,
              "sts_f32": sts_f32, "unpack_s8_f32": unpack_s8_f32, "spread_s8": spread_s8, "max_s16x2": max_s16x2,
              "gather_s8": gather_s8, "lds_v4_f32": lds_v4_f32, "f32_bits": f32_bits, "bits_f32": bits_f32,
              "cp_async_commit": cp_async_commit, **CP_ASYNC_WAITS}

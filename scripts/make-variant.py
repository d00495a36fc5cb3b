#!/usr/bin/env python3
"""Derive a variant of a GGUF model with another weight type, offline, with the PyPI package
`gguf` (0.19): every Q4_1 matrix is dequantized and requantized to TYPE (Q4_0, Q8_0, Q5_0,
Q5_1, F16, BF16); other tensors and all metadata are copied. The result has the same weights,
only as good as the source.

  python3 scripts/make-variant.py models/SmolLM2-135M-Instruct.Q4_1.gguf Q4_0 models/SmolLM2-135M-Instruct.Q4_0.gguf
"""
import sys
import numpy as np
import gguf
from gguf.quants import dequantize, quantize

src, type_name, dst = sys.argv[1:4]
target = gguf.GGMLQuantizationType[type_name]
r = gguf.GGUFReader(src)
arch = r.fields["general.architecture"]
arch = bytes(arch.parts[arch.data[0]]).decode()
w = gguf.GGUFWriter(dst, arch)
for name, f in r.fields.items():
    if name.startswith("GGUF.") or name == "general.architecture":
        continue
    t = f.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        sub = f.types[-1]
        if sub == gguf.GGUFValueType.STRING:
            val = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        else:
            val = [f.parts[i].tolist()[0] for i in f.data]
        w.add_key_value(name, val, t, sub_type=sub)
    elif t == gguf.GGUFValueType.STRING:
        w.add_key_value(name, bytes(f.parts[f.data[0]]).decode("utf-8"), t)
    else:
        w.add_key_value(name, f.parts[f.data[0]].tolist()[0], t)
for t in r.tensors:
    shape = tuple(int(d) for d in reversed(t.shape))  # numpy order: outermost first
    if t.tensor_type == gguf.GGMLQuantizationType.Q4_1:
        x = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        if target == gguf.GGMLQuantizationType.F16:
            w.add_tensor(t.name, x.astype(np.float16))
        else:
            q = quantize(x, target)
            w.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=target)
    elif t.tensor_type == gguf.GGMLQuantizationType.F32:
        w.add_tensor(t.name, np.asarray(t.data, dtype=np.float32).reshape(shape))
    else:
        raw = np.asarray(t.data, dtype=np.uint8)
        w.add_tensor(t.name, raw, raw_shape=raw.shape, raw_dtype=t.tensor_type)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(dst)

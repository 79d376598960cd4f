# Copies the fused CUDA sources into a folder as C++ for the CPU emulation: kernel launches
# `k<<<grid, block, smem, stream>>>(args);` become `::emu::launch(grid, block, smem, stream, [&] { k(args); });`
# and every 4-wide vector access first checks its alignment.
import os
import re
import sys

repo, out = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(out, "kernels/cuda"), exist_ok=True)
launch = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\((.*?)\);", re.S)
for name in ["fused_util.cuh", "fused_util.cu", "margin_softmax.cu", "perturb.cu", "sgd.cu", "adamw.cu"]:
    s = open(os.path.join(repo, "kernels/cuda", name)).read()
    s = launch.sub(lambda m: "::emu::launch(%s, [&] { %s(%s); });" % (m.group(2), m.group(1), m.group(3)), s)
    for access in ["Vec4<T> v = *reinterpret_cast<const Vec4<T>*>(p);", "*reinterpret_cast<Vec4<T>*>(p) = v;"]:
        s = s.replace(access, "::emu::check_aligned(p, sizeof(Vec4<T>)); " + access)
    target = name[:-3] + ".cpp" if name.endswith(".cu") else name
    open(os.path.join(out, "kernels/cuda", target), "w").write(s)

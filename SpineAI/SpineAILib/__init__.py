"""SpineAILib: everything SpineAI does that does not need the Slicer GUI.

Heavy packages (torch, monai, slicer, vtk) are imported lazily inside the modules
that need them, so ``spineai --help`` and argument errors answer at once.
"""

__version__ = "0.1.0"



def _guard_triton():
    """Keep ``import triton`` from crashing a process that has already rendered offscreen.

    Mesa's llvmpipe (the offscreen OpenGL of the overlays) loads the system's libLLVM; triton
    (which torch looks for, and MONAI / torchvision import through torch._dynamo) carries its
    own LLVM, and loading it after Mesa's segfaults the process. Since the networks run in ONNX
    Runtime (issue 20), torch is often imported only after a run has rendered (a run, then
    Grad-CAM or training in the same process). Then triton is marked absent before torch, MONAI
    or torchvision is first imported, which torch handles (triton only compiles GPU kernels).
    """
    import sys

    class _TritonAfterMesa:
        names = ("torch", "monai", "torchvision", "triton")

        def find_spec(self, name, path=None, target=None):
            if name not in self.names or "triton" in sys.modules:
                return None
            try:
                with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
                    clash = "libLLVM" in maps.read()
            except OSError:
                return None
            if clash:
                sys.modules["triton"] = None  # `import triton` -> ImportError, find_spec -> None
                if name == "triton":
                    raise ImportError("triton is not imported after Mesa's libLLVM (their LLVMs clash)")
            return None

    sys.meta_path.insert(0, _TritonAfterMesa())


_guard_triton()

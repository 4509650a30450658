"""A small recurrent network of current-based LIF neurons written with the nir API (NIR 1.0.8):
Input (3) → Affine → CubaLIF (8, with a recurrent Affine) → Affine → LIF (2) → Output, saved as
``cuba_rnn.nir`` next to this script. Time constants in seconds (run it with dt = 1 ms).

    python examples/nir/build_graph.py

Then, e.g.::

    from neuroemu.chip import Hardware
    from neuroemu.interop.nir import from_nir
    model = from_nir("examples/nir/cuba_rnn.nir", dt=1e-3)
    chip = model.build(Hardware(card="pcm_joshi2020", scheme="ideal"), rng=0)
"""

from pathlib import Path

import numpy as np
import nir

N_IN, N_HID, N_OUT = 3, 8, 2
SEED = 0


def build_graph(seed: int = SEED) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    nodes = {
        "input": nir.Input(input_type=np.array([N_IN])),
        "fc1": nir.Affine(weight=rng.normal(0.0, 1.0, (N_HID, N_IN)), bias=np.full(N_HID, 0.1)),
        "lif1": nir.CubaLIF(tau_syn=np.full(N_HID, 5e-3), tau_mem=np.full(N_HID, 10e-3), r=np.full(N_HID, 2.0),
                            v_leak=np.zeros(N_HID), v_threshold=np.ones(N_HID), v_reset=np.zeros(N_HID),
                            w_in=np.ones(N_HID)),
        "rec": nir.Affine(weight=rng.normal(0.0, 0.5, (N_HID, N_HID)), bias=np.zeros(N_HID)),
        "fc2": nir.Affine(weight=rng.normal(0.0, 2.0, (N_OUT, N_HID)), bias=np.zeros(N_OUT)),
        "lif2": nir.LIF(tau=np.full(N_OUT, 20e-3), r=np.full(N_OUT, 5.0), v_leak=np.zeros(N_OUT),
                        v_threshold=np.ones(N_OUT), v_reset=np.zeros(N_OUT)),
        "output": nir.Output(output_type=np.array([N_OUT])),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "rec"), ("rec", "lif1"), ("lif1", "fc2"),
             ("fc2", "lif2"), ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3, "source": "examples/nir/build_graph.py"})


def main() -> Path:
    path = Path(__file__).resolve().parent / "cuba_rnn.nir"
    nir.write(path, build_graph(), compression=None)  # tiny arrays: gzip only adds HDF5 overhead
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return path


if __name__ == "__main__":
    main()

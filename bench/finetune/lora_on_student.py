"""A LoRA trained on the teacher applied to its distilled students (LCM-LoRA-style composition):
thick-stroke FD (held-out thick digits, digits-eval features) of the students with and without the
shipped `digits-unet-lora-thick`, and of the teacher with it at DDIM 4 / 20 steps; 360 samples,
seeds 0-2.   python bench/finetune/lora_on_student.py   (one core, ~3 min)"""
import torch
torch.set_num_threads(1)
import effdiff as ed
from effdiff import finetune as ft
from effdiff.bench.finetune import _evaluations
ev = _evaluations()["thick"]
lora = "src/effdiff/zoo/weights/digits-unet-lora-thick"
labels = torch.arange(360) % 10
for name in ["digits-unet-pd-4step", "digits-unet-pd-1step"]:
    for use in (False, True):
        st = ed.zoo.load(name)
        if use:
            ft.load_lora(st.denoiser, lora, check_base=False)
        fds = []
        for seed in (0, 1, 2):
            with torch.no_grad():
                x = st.generate(360, cond=labels, seed=seed)
            fds.append(ev.quality(x, labels)["fd"])
        print(name, "lora" if use else "plain", [round(f, 2) for f in fds], flush=True)
# the teacher with the LoRA, DDIM 4 and 20 steps, for comparison
for steps in (4, 20):
    den = ed.zoo.load("digits-unet"); ft.load_lora(den, lora)
    sig = ed.timesteps.get("uniform", steps, den.process)
    fds = []
    for seed in (0, 1, 2):
        x = ed.sample(den, ed.sampling.initial(den, 360, sig, seed=seed, cond=labels), sig, "ddim", cond=labels)
        fds.append(ev.quality(x, labels)["fd"])
    print("teacher+lora ddim", steps, [round(f, 2) for f in fds], flush=True)

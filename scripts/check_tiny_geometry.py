"""By-hand check: the sew-d-tiny geometry saved as a legacy pytorch_model.bin (weight_g/weight_v,
sew_d. prefix) through `sewd forward`, against transformers on 16.5 s of speech. Run after
bench/cpu_vs_pytorch.py has written bench/.cache/sewd-tiny. Printed last: shapes and the relative error."""
import torch, numpy as np, wave, subprocess, os, json, shutil
from transformers import SEWDForCTC, Wav2Vec2FeatureExtractor
src="bench/.cache/sewd-tiny"; dst="/tmp/sewd-tiny-bin"
os.makedirs(dst, exist_ok=True)
m=SEWDForCTC.from_pretrained(src).eval()
sd={k.replace("parametrizations.weight.original0","weight_g").replace("parametrizations.weight.original1","weight_v"):v for k,v in m.state_dict().items()}
torch.save(sd, f"{dst}/pytorch_model.bin")
for f in ["config.json","preprocessor_config.json"]: shutil.copy(f"{src}/{f}", dst)
w=wave.open("tests/fixtures/models/speech_16s.wav"); a=np.frombuffer(w.readframes(w.getnframes()),dtype="<i2").astype(np.float32)/32768
x=Wav2Vec2FeatureExtractor()(a,sampling_rate=16000,return_tensors="pt").input_values
with torch.no_grad(): ref=m(x).logits.numpy()
subprocess.run(["target/release/sewd","forward","--model",dst,"--audio","tests/fixtures/models/speech_16s.wav","--output","logits","--out","/tmp/l.npy"],check=True)
got=np.load("/tmp/l.npy"); print(got.shape, ref.shape, np.abs(got-ref).max()/np.abs(ref).max())

_base_ = ["./toy_base.py"]
model = dict(width=16)

default_scope = "dftoy"
custom_imports = dict(imports=["openmmlab_toy"], allow_failed_imports=False)
model = dict(type="ToyClassifier", width=8, depth=2)

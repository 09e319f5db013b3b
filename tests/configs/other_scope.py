default_scope = "mmnotinstalled"
model = dict(type="ImageClassifier", backbone=dict(type="ResNet", depth=50))

default_scope = "dftoy"
optimizer = dict(type="SGD", lr=0.1)

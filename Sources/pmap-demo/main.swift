print("pmap-demo: placeholder")

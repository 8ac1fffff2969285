print("botrt-controller")

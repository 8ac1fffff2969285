print("botrt-engine")

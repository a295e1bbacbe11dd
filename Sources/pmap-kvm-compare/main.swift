import PmapKVM

let m = KVMScenario(seed: 1, accesses: 10)
print(m.edits)

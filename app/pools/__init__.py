"""Red-packet pools many consumers grab (拼手气 / fixed split), with fission sharing."""

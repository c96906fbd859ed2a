// Command clipd-synth makes the training data of clipd's demo CLIP model and
// measures a trained model's zero-shot accuracy on fresh scenes.
//
//	clipd-synth gen  --out DIR --n N --seed S --size 64
//	clipd-synth eval --model DIR --n 2000 --seed 900000000
package main

import (
	"fmt"
	"os"
)

const usage = `usage:
  clipd-synth gen  --out DIR --n N [--seed S] [--size 64] [--jobs J] [--jpeg 0.2]
  clipd-synth eval --model DIR [--n 2000] [--seed 900000000] [--size 0] [--json FILE]
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = runGen(os.Args[2:])
	case "eval":
		err = runEval(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		err = fmt.Errorf("unknown command %q\n%s", os.Args[1], usage)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "clipd-synth:", err)
		os.Exit(1)
	}
}

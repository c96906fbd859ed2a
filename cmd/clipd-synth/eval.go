package main

import "fmt"

func runEval(args []string) error {
	return fmt.Errorf("eval: not built yet")
}

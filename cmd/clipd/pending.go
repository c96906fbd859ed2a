package main

import (
	"context"
	"errors"
	"io"
)

func cmdRun(context.Context, []string, io.Reader, io.Writer, io.Writer) error {
	return errors.New("not yet")
}
func cmdCheck(context.Context, []string, io.Reader, io.Writer, io.Writer) error {
	return errors.New("not yet")
}
func cmdTail(context.Context, []string, io.Reader, io.Writer, io.Writer) error {
	return errors.New("not yet")
}
func cmdVerify(context.Context, []string, io.Reader, io.Writer, io.Writer) error {
	return errors.New("not yet")
}

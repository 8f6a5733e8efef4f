package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// logFlags are the logging flags of the long-running roles: controller-runtime's zap logger,
// with the level and the encoding an operator picks (JSON for a log pipeline, console for
// reading by eye).
type logFlags struct {
	level   string
	format  string
	verbose bool
}

func (l *logFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&l.level, "log-level", "info",
		`least important messages logged: "error", "info", "debug", or a number N for logr's V(N) and below (debug is 1)`)
	f.StringVar(&l.format, "log-format", "json", `"json" (one object per line) or "console" (for people)`)
	f.BoolVarP(&l.verbose, "verbose", "v", false, "the same as --log-level=debug")
}

// logger builds the logger the flags ask for, writing to w.
func (l *logFlags) logger(w io.Writer) (logr.Logger, error) {
	var level zapcore.Level
	switch l.level {
	case "error":
		level = zapcore.ErrorLevel
	case "info":
		level = zapcore.InfoLevel
	case "debug":
		level = zapcore.DebugLevel
	default:
		// zap's level -N is logr's V(N).
		n, err := strconv.Atoi(l.level)
		if err != nil || n < 0 || n > 127 {
			return logr.Logger{}, fmt.Errorf(`--log-level=%q: want "error", "info", "debug" or a verbosity from 0 to 127`, l.level)
		}
		level = zapcore.Level(-n)
	}
	if l.verbose {
		level = min(level, zapcore.DebugLevel)
	}
	opts := []zap.Opts{zap.Level(level), zap.WriteTo(w)}
	switch l.format {
	case "json":
		opts = append(opts, zap.JSONEncoder())
	case "console":
		opts = append(opts, zap.ConsoleEncoder())
	default:
		return logr.Logger{}, fmt.Errorf(`--log-format=%q: want "json" or "console"`, l.format)
	}
	return zap.New(opts...), nil
}

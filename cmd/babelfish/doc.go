// Command babelfish is the one binary of the Babelfish cluster: every role
// (scheduler, trainer, serving, GPU agent, the embedded `up`) and every user
// command (dataset, submit, translate, …) is a subcommand, so one container
// image serves every Deployment and DaemonSet.
package main

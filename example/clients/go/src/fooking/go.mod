module github.com/fooking/fooking/example/clients/go/src/fooking

go 1.19

require (
	github.com/gomodule/redigo v1.8.3
	github.com/nats-io/nats.go v1.22.1
)

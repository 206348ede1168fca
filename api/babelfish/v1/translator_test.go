package babelfishv1_test

import (
	"context"
	"net"
	"testing"
	"time"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestServiceShape pins the contract in DESIGN.md: three RPCs, one of them
// bidirectional streaming.
func TestServiceShape(t *testing.T) {
	sd := babelfishv1.File_babelfish_v1_translator_proto.Services().ByName("Translator")
	if sd == nil {
		t.Fatal("no Translator service in the descriptor")
	}
	want := map[string][2]bool{ // name -> client streaming, server streaming
		"Translate":       {false, false},
		"StreamTranslate": {true, true},
		"ListLanguages":   {false, false},
	}
	if n := sd.Methods().Len(); n != len(want) {
		t.Fatalf("Translator has %d methods, want %d", n, len(want))
	}
	for name, s := range want {
		m := sd.Methods().ByName(protoreflect.Name(name))
		if m == nil {
			t.Errorf("method %s missing", name)
			continue
		}
		if m.IsStreamingClient() != s[0] || m.IsStreamingServer() != s[1] {
			t.Errorf("%s streaming = (%v,%v), want %v", name, m.IsStreamingClient(), m.IsStreamingServer(), s)
		}
	}
}

// TestWireOverLoopback serves the unimplemented server over a real TCP
// loopback listener with reflection, the way `babelfish serve` will.
func TestWireOverLoopback(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	babelfishv1.RegisterTranslatorServer(srv, babelfishv1.UnimplementedTranslatorServer{})
	reflection.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err = babelfishv1.NewTranslatorClient(conn).ListLanguages(ctx, &babelfishv1.ListLanguagesRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("ListLanguages on the unimplemented server: %v, want Unimplemented", err)
	}

	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range resp.GetListServicesResponse().GetService() {
		found = found || s.GetName() == "babelfish.v1.Translator"
	}
	if !found {
		t.Errorf("reflection does not list babelfish.v1.Translator: %v", resp)
	}
}

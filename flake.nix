{
  description = "kiln: reproducible OCI images from ordinary multi-stage Dockerfiles";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";
    flake-utils.url = "github:numtide/flake-utils";
  };

  outputs = { self, nixpkgs, flake-utils }:
    flake-utils.lib.eachSystem [ "x86_64-linux" "aarch64-linux" ] (system:
      let
        pkgs = import nixpkgs { inherit system; };
        # Tools the test suite drives for real.
        testTools = with pkgs; [ nix skopeo umoci buildah busybox go nodejs ];
        kiln = pkgs.rustPlatform.buildRustPackage {
          pname = "kiln";
          version = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).package.version;
          src = pkgs.lib.cleanSource ./.;
          cargoLock.lockFile = ./Cargo.lock;
          nativeBuildInputs = [ pkgs.pkg-config ];
          nativeCheckInputs = [ pkgs.nix ];
          # The sandbox tests need namespaces, which the Nix build sandbox
          # does not grant; `checks.tests` runs the rest.
          doCheck = false;
          meta = {
            description = "Reproducible OCI images from ordinary multi-stage Dockerfiles";
            license = pkgs.lib.licenses.asl20;
            mainProgram = "kiln";
            platforms = pkgs.lib.platforms.linux;
          };
        };
      in
      {
        packages.default = kiln;
        packages.kiln = kiln;

        apps.default = flake-utils.lib.mkApp { drv = kiln; };

        devShells.default = pkgs.mkShell {
          inputsFrom = [ kiln ];
          packages = with pkgs; [
            cargo
            rustc
            rustfmt
            clippy
            cargo-nextest
            cargo-insta
            hyperfine
          ] ++ testTools;
          RUST_SRC_PATH = "${pkgs.rustPlatform.rustLibSrc}";
        };

        checks = {
          build = kiln;
          tests = kiln.overrideAttrs (old: {
            pname = "kiln-tests";
            doCheck = true;
            nativeCheckInputs = (old.nativeCheckInputs or [ ]) ++ testTools;
            # Front end, store and image tests; namespace tests skip with a
            # printed reason inside the Nix build sandbox.
            checkPhase = ''
              runHook preCheck
              cargo test --release --offline
              runHook postCheck
            '';
          });
          fmt = pkgs.runCommand "kiln-fmt" { nativeBuildInputs = [ pkgs.cargo pkgs.rustfmt ]; } ''
            cd ${./.}
            cargo fmt --all --check
            touch $out
          '';
        };
      });
}
